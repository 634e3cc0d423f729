//! `S3Client`: the S3 operations bucketfs needs, signed with SigV4, with bounded concurrency,
//! retries with jittered exponential backoff, and traffic counters.

use std::path::PathBuf;
use std::sync::Arc;

use crate::buffer_pool::BufferPool;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::Method;
use md5::{Digest as _, Md5};
use tokio::sync::Semaphore;
use tracing::debug;

use super::credentials::SharedCredentials;
use super::error::S3Error;
use super::payload::Payload;
use super::profile::{profile, Capabilities, Holds, Profile, Provider};
use super::sigv4::{self, SignableRequest, SigningKeyCache, SigningParams};
use super::stats::{Op, Stats, StatsSnapshot};
use super::time::parse_http_date;
use super::transport::{self, Endpoint, HttpClient, Progress, RequestBody};
use super::types::{
    ByteRange, CompletedPart, GetObjectOutput, ListPage, ListRequest, MultipartUploadInfo,
    ObjectLock, ObjectMeta, PutOptions, RetainUntil, ServerSideEncryption, UploadChecksums,
};
pub use super::wire::{backoff_ceiling, backoff_delay, range_header};
use super::wire::{
    body_excerpt, meta_from_headers, parse_content_range, payload_hash, quote_etag, strip_quotes,
};
use super::xml;

/// How to reach one bucket, and how hard to try.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// false → virtual-hosted (`bucket.host/key`); true → path style (`host/bucket/key`).
    pub path_style: bool,
    pub credentials: SharedCredentials,
    pub profile: &'static Profile,
    /// Most requests in flight at once.
    pub max_inflight: usize,
    /// Stop retrying once this much time has passed since the first attempt.
    pub retry_timeout: Duration,
    /// Most attempts per operation (1 = no retries).
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    /// An attempt fails once it has sent or received nothing for this long.
    pub read_timeout: Duration,
    /// Extra trusted CAs (PEM bundle), on top of the system's and `AWS_CA_BUNDLE`.
    pub ca_bundle: Option<PathBuf>,
    /// true: `x-amz-content-sha256` is the body's SHA-256; false: `UNSIGNED-PAYLOAD`.
    pub sign_payload: bool,
    /// Storage class for new objects (sent in the profile's storage-class header, translated
    /// to the provider's name for it).
    pub storage_class: Option<String>,
    /// Server-side encryption of new objects (SSE-C: of every data request).
    pub sse: Option<ServerSideEncryption>,
    /// Send `x-amz-request-payer: requester` on every request.
    pub requester_pays: bool,
    /// Canned ACL of new objects (`x-amz-acl`): private, public-read, …
    pub acl: Option<String>,
    /// WORM retention put on every new object.
    pub object_lock: Option<ObjectLock>,
    /// Connect to this address whatever the host name (like curl's `--connect-to`); the
    /// `Host` header and signature still name the real host. Plain-http endpoints only.
    pub connect_to: Option<std::net::SocketAddr>,
    /// How long a write whose answer was lost or unclear (a timeout, a 5xx, NoSuchUpload on a
    /// retried Complete) may still land on the server: its key is HEADed until then before
    /// the write is called failed.
    pub confirm_grace: Duration,
    /// Which checksum uploads carry.
    pub upload_checksums: UploadChecksums,
    /// `--proxy http://[user:password@]host:port`; `None`: the environment's (`HTTPS_PROXY`,
    /// `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).
    pub proxy: Option<String>,
}

impl S3Config {
    /// Defaults: the `Other` profile, path style, 64 requests in flight, 10 attempts within
    /// 60 s, 5 s connect and 30 s stall timeouts, unsigned payloads.
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        bucket: impl Into<String>,
        credentials: SharedCredentials,
    ) -> Self {
        S3Config {
            endpoint: endpoint.into(),
            region: region.into(),
            bucket: bucket.into(),
            path_style: true,
            credentials,
            profile: profile(Provider::Other),
            max_inflight: 64,
            retry_timeout: Duration::from_secs(60),
            max_attempts: 10,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            ca_bundle: None,
            sign_payload: false,
            storage_class: None,
            sse: None,
            requester_pays: false,
            acl: None,
            object_lock: None,
            connect_to: None,
            confirm_grace: Duration::from_secs(30),
            upload_checksums: UploadChecksums::Auto,
            proxy: None,
        }
    }
}

/// A cheap-to-clone handle on one bucket.
#[derive(Clone)]
pub struct S3Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("endpoint", &self.inner.cfg.endpoint)
            .field("bucket", &self.inner.cfg.bucket)
            .field("provider", &self.inner.cfg.profile.name)
            .finish_non_exhaustive()
    }
}

struct Inner {
    cfg: S3Config,
    endpoint: Endpoint,
    http: HttpClient,
    permits: Semaphore,
    stats: Stats,
    keys: SigningKeyCache,
    /// `cfg.storage_class` in the provider's spelling.
    storage_class: Option<String>,
    /// Buffers for object data read from responses, reused; in huge pages where the kernel
    /// gives them ([`BufferPool::huge`]).
    bodies: Arc<BufferPool>,
    /// What the server really does (from the profile, then the probe and first use).
    caps: parking_lot::RwLock<Capabilities>,
    /// Where bodies the client itself holds (a part read back for a refused copy) take their
    /// memory from, once the user of the client says.
    memory: std::sync::OnceLock<Arc<dyn MemoryGate>>,
}

/// A memory bound the client's own buffers count against (the mount's budget). `acquire`
/// returns a guard that gives the bytes back when dropped.
pub trait MemoryGate: Send + Sync {
    fn acquire(&self, bytes: u64) -> futures::future::BoxFuture<'static, Box<dyn Send>>;
    /// A hold on `bytes` now, or `None` when there is no room.
    fn try_acquire(&self, bytes: u64) -> Option<crate::buffer_pool::Room>;
    /// `pool` keeps idle buffers under this gate: they are let go when memory is short.
    fn add_pool(&self, pool: std::sync::Weak<BufferPool>);
}

/// Canned ACLs S3 defines.
const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

/// Which SSE headers a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SseFor {
    /// PutObject, CreateMultipartUpload, CopyObject destination: the full set.
    NewObject,
    /// UploadPart, UploadPartCopy destination, HEAD, GET: SSE-C key only.
    Data,
}

/// One S3 call, before signing.
struct Call<'a> {
    op: Op,
    method: Method,
    /// Object key; `None` for bucket-level calls.
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    /// Extra headers (lower-case names), all signed.
    headers: Vec<(String, String)>,
    body: Payload,
    /// A 2xx body may be an `<Error>` (CompleteMultipartUpload, copies).
    check_ok_body: bool,
    /// Non-2xx statuses handed back as responses rather than errors.
    accept: &'a [u16],
    /// Check a whole-object body against the server's checksum or MD5 ETag (GET).
    verify_body: bool,
    /// The CRC32C of each this many bytes of the body, computed as it arrives (GET).
    unit_crcs: Option<usize>,
    /// A probe's question: one attempt, and a refusal is an answer (not counted or logged).
    probe: bool,
    /// `x-amz-content-sha256`: the body's SHA-256 (the server verifies it) whatever
    /// `--sign-payload` says; a given value as it is (a probe's wrong one).
    payload_sha256: PayloadSha256,
}

/// What a call's `x-amz-content-sha256` is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PayloadSha256 {
    /// As the mount's `--sign-payload` says.
    AsConfigured,
    /// The body's SHA-256.
    Signed,
    /// This value (a probe's wrong hash).
    Given(String),
}

impl<'a> Call<'a> {
    fn new(op: Op, method: Method, key: Option<&'a str>) -> Self {
        Call {
            op,
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Payload::default(),
            check_ok_body: false,
            accept: &[],
            verify_body: false,
            unit_crcs: None,
            probe: false,
            payload_sha256: PayloadSha256::AsConfigured,
        }
    }

    fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// A response read to the end.
struct Response {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    /// The body's unit CRC32Cs, when the call asked for them.
    unit_crcs: Vec<u32>,
    /// An earlier attempt of this call failed in a way that may have left it carried out
    /// (its answer lost): the server may have done it twice.
    earlier_may_have_applied: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

impl S3Client {
    /// Builds a client. Fails on a bad endpoint, or unreadable CA bundle for https.
    pub fn new(cfg: S3Config) -> Result<S3Client, S3Error> {
        let endpoint = Endpoint::parse(&cfg.endpoint)?;
        if cfg.bucket.is_empty() {
            return Err(S3Error::Config("bucket name is empty".into()));
        }
        if !cfg.path_style && endpoint.host_is_ip() {
            return Err(S3Error::Config(format!(
                "virtual-hosted addressing needs a host name, not {}; use path style",
                endpoint.host
            )));
        }
        if !cfg.path_style && cfg.bucket.contains(['/', ':']) {
            return Err(S3Error::Config(format!(
                "bucket {:?} cannot be used in a host name",
                cfg.bucket
            )));
        }
        let mut bundles: Vec<PathBuf> = cfg.ca_bundle.iter().cloned().collect();
        if let Some(p) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) {
            bundles.push(PathBuf::from(p));
        }
        let base = endpoint.uri(&endpoint.authority(None), "/", "")?;
        let proxy = super::proxy::Proxy::for_endpoint(&base, cfg.proxy.as_deref())?;
        if let Some(p) = &proxy {
            tracing::info!(
                "reaching {} through the proxy {}",
                cfg.endpoint,
                p.describe()
            );
        }
        let http = transport::build_client(&transport::ClientSettings {
            https: endpoint.https,
            connect_timeout: cfg.connect_timeout,
            max_idle_per_host: cfg.max_inflight,
            ca_bundles: &bundles,
            proxy: proxy.as_ref(),
        })?;
        if cfg.connect_to.is_some() && endpoint.https {
            return Err(S3Error::Config(
                "connect_to works with plain-http endpoints only".into(),
            ));
        }
        let storage_class = cfg
            .storage_class
            .as_deref()
            .map(|c| cfg.profile.storage_class_name(c))
            .transpose()
            .map_err(S3Error::Config)?;
        if let Some(acl) = &cfg.acl {
            if !CANNED_ACLS.contains(&acl.as_str()) {
                return Err(S3Error::Config(format!(
                    "--acl {acl} is not a canned ACL; use one of {}",
                    CANNED_ACLS.join(", ")
                )));
            }
        }
        if let Some(lock) = &cfg.object_lock {
            if !lock.mode.eq_ignore_ascii_case("COMPLIANCE")
                && !lock.mode.eq_ignore_ascii_case("GOVERNANCE")
            {
                return Err(S3Error::Config(format!(
                    "object lock mode {} is neither COMPLIANCE nor GOVERNANCE",
                    lock.mode
                )));
            }
        }
        let permits = Semaphore::new(cfg.max_inflight.max(1));
        let cfg_caps = cfg.profile.caps;
        Ok(S3Client {
            inner: Arc::new(Inner {
                cfg,
                endpoint,
                http,
                permits,
                stats: Stats::new(),
                keys: SigningKeyCache::new(),
                storage_class,
                bodies: Arc::new(BufferPool::huge()),
                caps: parking_lot::RwLock::new(cfg_caps),
                memory: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.inner.cfg.bucket
    }

    /// The buffers GET bodies arrive in (page-aligned, recycled, counted by the memory gate
    /// while idle), for other reads of object data into memory to share.
    pub fn body_pool(&self) -> Arc<BufferPool> {
        self.inner.bodies.clone()
    }

    pub fn config(&self) -> &S3Config {
        &self.inner.cfg
    }

    /// The provider profile in use (part sizes, copy limits, …).
    pub fn profile(&self) -> &'static Profile {
        self.inner.cfg.profile
    }

    /// Bodies the client holds from now on count against `gate` (set once; later calls are
    /// ignored).
    pub fn set_memory_gate(&self, gate: Arc<dyn MemoryGate>) {
        self.inner.bodies.set_gate(gate.clone());
        let _ = self.inner.memory.set(gate);
    }

    /// What the server is known to do where servers differ.
    pub fn capabilities(&self) -> Capabilities {
        *self.inner.caps.read()
    }

    /// Replace what is known of the server (from a probe).
    pub fn set_capabilities(&self, caps: Capabilities) {
        *self.inner.caps.write() = caps;
    }

    /// Whether ranges of objects may be copied server-side into parts (UploadPartCopy): no once
    /// the profile or an answer of the server said it refuses them.
    pub fn copies_parts(&self) -> bool {
        self.capabilities().upload_part_copy != Holds::No
    }

    /// Whether ranges of `source_key` may be copied server-side into parts. Never for a key
    /// holding a `%`: Ceph RGW decodes UploadPartCopy's source twice (`a%41` copies `aA`, or
    /// gets 404), and nothing in its answer tells (it ignores copy-source conditions); such a
    /// key's bytes are read and sent instead. Its CopyObject decodes once, as AWS does.
    pub fn copies_parts_from(&self, source_key: &str) -> bool {
        self.copies_parts() && !source_key.contains('%')
    }

    /// The one place that decides what a failed UploadPartCopy means: true when `e` says the
    /// server refuses server-side part copies, which is then remembered for this mount (and
    /// logged once); the caller sends the bytes itself (GET + UploadPart). False for any other
    /// error, which the caller returns.
    pub fn copy_refused(&self, key: &str, e: &S3Error) -> bool {
        if !e.is_copy_refused() {
            return false;
        }
        let mut caps = self.inner.caps.write();
        if caps.upload_part_copy != Holds::No {
            caps.upload_part_copy = Holds::No;
            tracing::info!(
                key,
                error = %e,
                "server refuses UploadPartCopy; copies and in-place changes send the bytes (GET + UploadPart) from now on"
            );
        }
        true
    }

    /// Where the credentials came from (never the secret itself).
    pub fn describe_credentials(&self) -> String {
        self.inner.cfg.credentials.describe()
    }

    /// Counters since the client was built.
    pub fn stats(&self) -> StatsSnapshot {
        let max = self.inner.cfg.max_inflight.max(1);
        let free = self.inner.permits.available_permits();
        self.inner.stats.snapshot(max.saturating_sub(free) as u64)
    }

    /// `(authority, raw path)` of a bucket-level (`None`) or object request.
    fn target(&self, key: Option<&str>) -> Result<(String, String), S3Error> {
        let cfg = &self.inner.cfg;
        let ep = &self.inner.endpoint;
        if key == Some("") {
            return Err(S3Error::Config("empty object key".into()));
        }
        let mut path = ep.base_path.clone();
        let authority = if cfg.path_style {
            path.push('/');
            path.push_str(&cfg.bucket);
            ep.authority(None)
        } else {
            ep.authority(Some(&cfg.bucket))
        };
        match key {
            Some(k) => {
                path.push('/');
                path.push_str(k);
            }
            None if path.is_empty() => path.push('/'),
            None => {}
        }
        Ok((authority, path))
    }

    /// The URL a request for `key` goes to, for logs and tests (no query string).
    pub fn object_url(&self, key: &str) -> Result<String, S3Error> {
        let (authority, path) = self.target(Some(key))?;
        Ok(self
            .inner
            .endpoint
            .uri(&authority, &sigv4::uri_encode_path(&path), "")?
            .to_string())
    }

    fn x_id<'a>(&self, call: Call<'a>) -> Call<'a> {
        if self.inner.cfg.profile.send_x_id_query {
            let name = call.op.aws_name();
            call.query("x-id", name)
        } else {
            call
        }
    }

    /// Headers describing a new object: content type, user metadata.
    fn object_headers(&self, opts: &PutOptions) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(ct) = &opts.content_type {
            h.push(("content-type".to_owned(), ct.clone()));
        }
        for (k, v) in &opts.user_metadata {
            h.push((format!("x-amz-meta-{}", k.to_ascii_lowercase()), v.clone()));
        }
        for (k, v) in &opts.content_headers {
            h.push((k.clone(), v.clone()));
        }
        h
    }

    /// Headers every new object gets from the mount's settings, whatever its metadata:
    /// storage class, canned ACL, encryption, WORM retention.
    fn new_object_headers(&self) -> Vec<(String, String)> {
        let cfg = &self.inner.cfg;
        let mut h = Vec::new();
        if let Some(class) = &self.inner.storage_class {
            h.push((cfg.profile.storage_class_header.to_owned(), class.clone()));
        }
        if let Some(acl) = &cfg.acl {
            h.push(("x-amz-acl".to_owned(), acl.clone()));
        }
        h.extend(self.sse_headers(SseFor::NewObject));
        if let Some(lock) = &cfg.object_lock {
            let until = match &lock.retain {
                RetainUntil::Date(d) => d.clone(),
                RetainUntil::For(d) => super::time::iso8601(std::time::SystemTime::now() + *d),
            };
            h.push((
                "x-amz-object-lock-mode".to_owned(),
                lock.mode.to_ascii_uppercase(),
            ));
            h.push(("x-amz-object-lock-retain-until-date".to_owned(), until));
        }
        h
    }

    /// Encryption headers for one kind of request.
    fn sse_headers(&self, kind: SseFor) -> Vec<(String, String)> {
        let cfg = &self.inner.cfg;
        let mut h = Vec::new();
        match (&cfg.sse, kind) {
            (Some(ServerSideEncryption::S3), SseFor::NewObject) => {
                h.push((
                    "x-amz-server-side-encryption".to_owned(),
                    "AES256".to_owned(),
                ));
            }
            (Some(ServerSideEncryption::Kms { key_id }), SseFor::NewObject) => {
                h.push((
                    "x-amz-server-side-encryption".to_owned(),
                    cfg.profile.sse_kms_value.to_owned(),
                ));
                if let Some(id) = key_id {
                    h.push((
                        "x-amz-server-side-encryption-aws-kms-key-id".to_owned(),
                        id.clone(),
                    ));
                }
            }
            (Some(ServerSideEncryption::Customer(key)), _) => {
                h.push((
                    "x-amz-server-side-encryption-customer-algorithm".to_owned(),
                    "AES256".to_owned(),
                ));
                h.push((
                    "x-amz-server-side-encryption-customer-key".to_owned(),
                    key.key_b64().to_owned(),
                ));
                h.push((
                    "x-amz-server-side-encryption-customer-key-md5".to_owned(),
                    key.key_md5_b64().to_owned(),
                ));
            }
            _ => {}
        }
        h
    }

    /// SSE-C headers describing the source of a copy.
    fn copy_source_sse_headers(&self) -> Vec<(String, String)> {
        let Some(key) = self.inner.cfg.sse.as_ref().and_then(|s| s.customer_key()) else {
            return Vec::new();
        };
        vec![
            (
                "x-amz-copy-source-server-side-encryption-customer-algorithm".to_owned(),
                "AES256".to_owned(),
            ),
            (
                "x-amz-copy-source-server-side-encryption-customer-key".to_owned(),
                key.key_b64().to_owned(),
            ),
            (
                "x-amz-copy-source-server-side-encryption-customer-key-md5".to_owned(),
                key.key_md5_b64().to_owned(),
            ),
        ]
    }

    fn condition_headers(&self, opts: &PutOptions) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if opts.if_none_match_any {
            h.push(("if-none-match".to_owned(), "*".to_owned()));
        }
        if let Some(etag) = &opts.if_match {
            h.push(("if-match".to_owned(), self.if_match_value(etag)));
        }
        h
    }

    /// An ETag in the form this server matches in `If-Match` (quoted, or bare for RGW).
    fn if_match_value(&self, etag: &str) -> String {
        if self.inner.caps.read().if_match_bare {
            strip_quotes(etag)
        } else {
            quote_etag(etag)
        }
    }

    fn copy_source(&self, source_key: &str) -> String {
        sigv4::uri_encode_path(&format!("/{}/{}", self.inner.cfg.bucket, source_key))
    }

    /// Sends a call with retries; returns the 2xx (or accepted) response.
    async fn execute(&self, call: &Call<'_>) -> Result<Response, S3Error> {
        let inner = &self.inner;
        let cfg = &inner.cfg;
        let (authority, raw_path) = self.target(call.key)?;
        let began = Instant::now();
        let payload_hash = match &call.payload_sha256 {
            PayloadSha256::AsConfigured => payload_hash(&call.body, cfg.sign_payload).await?,
            PayloadSha256::Signed => payload_hash(&call.body, true).await?,
            PayloadSha256::Given(v) => v.clone(),
        };
        let started = Instant::now();
        let max_attempts = if call.probe {
            1
        } else {
            cfg.max_attempts.max(1)
        };
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        let mut maybe_applied = false;
        let result = loop {
            attempt += 1;
            let answer = match self
                .attempt(call, &authority, &raw_path, &payload_hash)
                .await
            {
                Ok(resp) if call.verify_body => self.check_get_body(&resp).await.map(|()| resp),
                other => other,
            };
            let err = match answer {
                Ok(mut resp) => {
                    resp.earlier_may_have_applied = maybe_applied;
                    break Ok(resp);
                }
                Err(e) => e,
            };
            if call.probe {
                break Err(err);
            }
            if matches!(err, S3Error::Corrupt(_)) || err.body_damaged() {
                inner.stats.checksum_failure();
                tracing::warn!(
                    op = call.op.name(),
                    key = call.key.unwrap_or(""),
                    "a body was damaged on the way ({err}); sending the request again"
                );
            }
            maybe_applied |= err.may_have_been_applied();
            if err.status() == Some(403) && !refreshed {
                refreshed = true;
                if cfg.credentials.refresh_after_denied() {
                    debug!(
                        op = call.op.name(),
                        "access denied; credentials changed, retrying"
                    );
                    inner.stats.retry();
                    continue;
                }
            }
            if !err.is_retryable() || attempt >= max_attempts {
                break Err(err);
            }
            let delay = backoff_delay(attempt);
            if started.elapsed() + delay > cfg.retry_timeout {
                break Err(err);
            }
            inner.stats.retry();
            debug!(
                op = call.op.name(),
                key = call.key.unwrap_or(""),
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %err,
                "S3 request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        };
        if let Err(err) = &result {
            let label = match err {
                S3Error::Service { code, .. } => code.as_str(),
                S3Error::Transport { connect: true, .. } => "connect",
                S3Error::Transport { .. } => "transport",
                S3Error::Timeout => "timeout",
                S3Error::InvalidResponse(_) => "invalid_response",
                S3Error::Config(_) => "config",
                S3Error::Certificate(_) => "certificate",
                S3Error::Corrupt(_) => "corrupt_body",
            };
            inner.stats.error(label);
            debug!(
                op = call.op.name(),
                key = call.key.unwrap_or(""),
                attempts = attempt,
                error = %err,
                "S3 request failed"
            );
        }
        tracing::trace!(
            op = call.op.name(),
            key = call.key.unwrap_or(""),
            attempts = attempt,
            ok = result.is_ok(),
            hash_ms = (started - began).as_millis() as u64,
            ms = started.elapsed().as_millis() as u64,
            "S3 request done"
        );
        result
    }

    /// One signed HTTP exchange.
    async fn attempt(
        &self,
        call: &Call<'_>,
        authority: &str,
        raw_path: &str,
        payload_hash: &str,
    ) -> Result<Response, S3Error> {
        let inner = &self.inner;
        let cfg = &inner.cfg;
        let _permit = inner
            .permits
            .acquire()
            .await
            .map_err(|_| S3Error::Config("client is shut down".into()))?;

        let mut headers: Vec<(String, String)> = Vec::with_capacity(call.headers.len() + 6);
        headers.push(("host".to_owned(), authority.to_owned()));
        headers.extend(call.headers.iter().cloned());
        if cfg.requester_pays {
            headers.push(("x-amz-request-payer".to_owned(), "requester".to_owned()));
        }
        let creds = cfg.credentials.current();
        if !creds.access_key_id.is_empty() {
            let params = SigningParams {
                access_key_id: &creds.access_key_id,
                secret_access_key: &creds.secret_access_key,
                session_token: creds.session_token.as_deref(),
                region: &cfg.region,
                service: "s3",
                time: std::time::SystemTime::now(),
            };
            let req = SignableRequest {
                method: call.method.as_str(),
                path: raw_path,
                query: &call.query,
                payload_hash,
                content_sha256_header: true,
            };
            sigv4::sign(&params, &req, &mut headers, Some(&inner.keys));
        }

        let connect_authority = cfg.connect_to.map(|a| a.to_string());
        let uri = inner.endpoint.uri(
            connect_authority.as_deref().unwrap_or(authority),
            &sigv4::uri_encode_path(raw_path),
            &sigv4::wire_query_string(&call.query),
        )?;
        let progress = Progress::new();
        let mut builder = hyper::Request::builder()
            .method(call.method.clone())
            .uri(uri);
        for (name, value) in &headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| S3Error::Config(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| S3Error::Config(format!("invalid characters in header {name}")))?;
            builder = builder.header(name, value);
        }
        if matches!(call.method, Method::PUT | Method::POST) {
            builder = builder.header(hyper::header::CONTENT_LENGTH, call.body.len());
        }
        builder = builder.header(
            hyper::header::USER_AGENT,
            concat!("bucketfs/", env!("CARGO_PKG_VERSION")),
        );
        let mut request = builder
            .body(RequestBody::new(call.body.clone(), progress.clone()))
            .map_err(|e| S3Error::Config(format!("cannot build request: {e}")))?;
        let connection = hyper_util::client::legacy::connect::capture_connection(&mut request);

        inner.stats.request(call.op);
        inner.stats.sent(call.body.len());
        progress.touch();
        let response = progress
            .run(inner.http.request(request), cfg.read_timeout)
            .await?
            .map_err(|e| transport::map_client_error(&e))?;
        let status = response.status().as_u16();
        if status >= 300 && !call.body.is_empty() {
            // the server may have answered without reading the body (RGW does for NoSuchBucket
            // or a key too long): the rest of it would stall the next request on this connection
            if let Some(c) = connection.connection_metadata().as_ref() {
                c.poison();
            }
        }
        let (parts, incoming) = response.into_parts();
        let (body, unit_crcs) = if call.method == Method::HEAD {
            (Bytes::new(), Vec::new())
        } else {
            let expected = parts
                .headers
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            transport::read_body(
                incoming,
                &progress,
                cfg.read_timeout,
                expected,
                &inner.bodies,
                call.unit_crcs.map(transport::UnitCrcs::new),
            )
            .await?
        };
        inner.stats.received(body.len() as u64);

        if (200..300).contains(&status) {
            if call.check_ok_body {
                if let Some(e) = xml::error_in_ok_body(&body, status, call.key) {
                    return Err(e);
                }
            }
        } else if !call.accept.contains(&status) {
            return Err(self.error_from_response(status, &parts.headers, &body, call.key));
        }
        Ok(Response {
            status,
            headers: parts.headers,
            body,
            unit_crcs,
            earlier_may_have_applied: false,
        })
    }

    fn error_from_response(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        key: Option<&str>,
    ) -> S3Error {
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let header_id = header("x-amz-request-id")
            .or_else(|| header("x-obs-request-id"))
            .or_else(|| header("x-oss-request-id"));
        let parsed = xml::parse_error(body).filter(|e| !e.code.is_empty());
        let body_region = parsed.as_ref().and_then(|e| e.region.clone());
        let (code, mut message, request_id) = match parsed {
            Some(e) => (e.code, e.message, e.request_id.or(header_id)),
            None => {
                let code = S3Error::code_for_status(status, key.is_none()).to_owned();
                let excerpt = body_excerpt(body);
                (code, excerpt, header_id)
            }
        };
        // Wrong region: S3 names the right one (301 redirect header, or <Region> in a 400).
        let region = header("x-amz-bucket-region").or(body_region);
        if let Some(region) = region.filter(|r| *r != self.inner.cfg.region) {
            let sep = if message.is_empty() { "" } else { " " };
            message = format!(
                "{message}{sep}(bucket is in region {region}; configured region is {})",
                self.inner.cfg.region
            );
        }
        S3Error::service(status, code, message, request_id, key)
    }

    /// Checks that the bucket exists and is reachable with these credentials.
    pub async fn head_bucket(&self) -> Result<(), S3Error> {
        self.execute(&Call::new(Op::HeadBucket, Method::HEAD, None))
            .await
            .map(|_| ())
    }

    /// One page of ListObjectsV2. Keys are requested URL-encoded when the profile allows.
    pub async fn list_objects_v2(&self, req: &ListRequest) -> Result<ListPage, S3Error> {
        let body = self.list_objects_v2_body(req).await?;
        xml::parse_list_objects_v2(&body)
    }

    /// One ListObjectsV2 page as the server sent it, for a caller that parses it itself
    /// ([`xml::parse_list_objects_v2`]): a directory walk sends the next request as soon as
    /// it has the page's continuation token ([`xml::peek_continuation_token`]), then parses.
    pub async fn list_objects_v2_body(&self, req: &ListRequest) -> Result<Bytes, S3Error> {
        let mut call = Call::new(Op::List, Method::GET, None).query("list-type", "2");
        if !req.prefix.is_empty() {
            call = call.query("prefix", req.prefix.clone());
        }
        if let Some(d) = &req.delimiter {
            call = call.query("delimiter", d.clone());
        }
        if let Some(t) = &req.continuation_token {
            call = call.query("continuation-token", t.clone());
        }
        if let Some(s) = &req.start_after {
            call = call.query("start-after", s.clone());
        }
        if let Some(n) = req.max_keys {
            call = call.query("max-keys", n.to_string());
        }
        if self.inner.cfg.profile.list_encoding_url {
            call = call.query("encoding-type", "url");
        }
        let resp = self.execute(&call).await?;
        Ok(resp.body)
    }

    /// HEAD of one object.
    pub async fn head_object(&self, key: &str) -> Result<ObjectMeta, S3Error> {
        self.head_object_as(key, false).await
    }

    /// HEAD of one object in one attempt, its failure not logged: for a caller that can do
    /// without the answer, and asks again with [`S3Client::head_object`] when it cannot.
    pub async fn head_object_once(&self, key: &str) -> Result<ObjectMeta, S3Error> {
        self.head_object_as(key, true).await
    }

    async fn head_object_as(&self, key: &str, once: bool) -> Result<ObjectMeta, S3Error> {
        let mut call = Call::new(Op::Head, Method::HEAD, Some(key));
        call.headers = self.sse_headers(SseFor::Data);
        call.probe = once;
        let resp = self.execute(&call).await?;
        Ok(meta_from_headers(&resp.headers))
    }

    /// GET of an object or a range `[start, end)` of it. `meta.size` is the whole object's
    /// size. A range starting at or past the end gives an empty body (like `pread`).
    pub async fn get_object(
        &self,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> Result<GetObjectOutput, S3Error> {
        self.get_object_units(key, range, if_match, None).await
    }

    /// [`get_object`](Self::get_object), with the CRC32C of each `unit` bytes of the body
    /// (from its first byte; the last may be shorter) in `unit_crcs`, computed as the body
    /// arrives.
    pub async fn get_object_units(
        &self,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
        unit: Option<usize>,
    ) -> Result<GetObjectOutput, S3Error> {
        if let Some(r) = &range {
            if r.end < r.start {
                return Err(S3Error::Config(format!("bad range {}..{}", r.start, r.end)));
            }
            if r.end == r.start {
                let meta = self.head_object(key).await?;
                return Ok(GetObjectOutput {
                    body: Bytes::new(),
                    meta,
                    unit_crcs: Vec::new(),
                });
            }
        }
        let mut call = self.x_id(Call::new(Op::Get, Method::GET, Some(key)));
        call.headers = self.sse_headers(SseFor::Data);
        if let Some(h) = range.as_ref().and_then(range_header) {
            call = call.header("range", h);
        }
        if let Some(etag) = if_match {
            call = call.header("if-match", quote_etag(etag));
        }
        call.accept = &[416];
        call.verify_body = true;
        call.unit_crcs = unit;
        if self.asks_checksums() {
            call = call.header("x-amz-checksum-mode", "ENABLED");
        }
        let resp = self.execute(&call).await?;
        let meta = meta_from_headers(&resp.headers);
        if resp.status == 416 {
            let start = range.as_ref().map_or(0, |r| r.start);
            let total = resp
                .header("content-range")
                .and_then(|v| parse_content_range(&v))
                .and_then(|(_, _, total)| total);
            return match total {
                Some(size) if start >= size => Ok(GetObjectOutput {
                    body: Bytes::new(),
                    meta: ObjectMeta { size, ..meta },
                    unit_crcs: Vec::new(),
                }),
                None if start == 0 => Ok(GetObjectOutput {
                    body: Bytes::new(),
                    meta: ObjectMeta { size: 0, ..meta },
                    unit_crcs: Vec::new(),
                }),
                _ => Err(self.error_from_response(416, &resp.headers, &resp.body, Some(key))),
            };
        }
        let mut body = resp.body;
        let mut unit_crcs = resp.unit_crcs;
        if let Some(r) = &range {
            if resp.status == 200 {
                // The server ignored Range and sent everything: cut out what was asked.
                let len = body.len() as u64;
                let start = r.start.min(len) as usize;
                let end = r.end.min(len) as usize;
                body = body.slice(start..end);
                // (its units start elsewhere)
                unit_crcs.clear();
            }
        }
        Ok(GetObjectOutput {
            body,
            meta,
            unit_crcs,
        })
    }

    /// PutObject. Returns size and ETag (other fields from `opts`). An answer that was lost or
    /// unclear is checked with a HEAD (see [`S3Client::confirm_put`]), and a server that
    /// matches `If-Match` only against bare ETags is found out here on first use.
    pub async fn put_object(
        &self,
        key: &str,
        body: impl Into<Payload>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, S3Error> {
        let body: Payload = body.into();
        let err = match self.put_object_once(key, body.clone(), opts).await {
            Ok(meta) => return Ok(meta),
            Err(e) => e,
        };
        let landed = self.confirm_put(key, &body, &err).await;
        let meta = |etag: Option<String>| ObjectMeta {
            size: body.len(),
            etag,
            last_modified: Some(std::time::SystemTime::now()),
            content_type: opts.content_type.clone(),
            storage_class: self.inner.storage_class.clone(),
            user_metadata: opts.user_metadata.clone(),
            content_headers: opts.content_headers.clone(),
        };
        match landed {
            Confirmed::Landed(etag) => Ok(meta(Some(etag))),
            Confirmed::Holds(etag)
                if err.is_precondition_failed() && self.learn_bare_if_match(opts, &etag) =>
            {
                self.put_object_once(key, body.clone(), opts).await
            }
            Confirmed::Holds(_) | Confirmed::Unknown => Err(err),
        }
    }

    /// A conditional write got 412 although the object still has the ETag it named: the
    /// server compares `If-Match` with the bare ETag (Ceph RGW). Whether that is news (then
    /// the write is worth sending again with the bare form).
    fn learn_bare_if_match(&self, opts: &PutOptions, current: &str) -> bool {
        let Some(want) = opts.if_match.as_deref() else {
            return false;
        };
        let mut caps = self.inner.caps.write();
        if caps.if_match_bare || !self.inner.cfg.profile.etags_equal(want, current) {
            return false;
        }
        caps.if_match_bare = true;
        tracing::info!(
            "this server matches If-Match only against bare ETags (as Ceph RGW does); sending \
             them without quotes from now on"
        );
        true
    }

    async fn put_object_once(
        &self,
        key: &str,
        body: Payload,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, S3Error> {
        let size = body.len();
        let mut call = self.x_id(Call::new(Op::Put, Method::PUT, Some(key)));
        call.headers = self.object_headers(opts);
        call.headers.extend(self.new_object_headers());
        call.headers.extend(self.condition_headers(opts));
        let crc32c = self.sends_crc32c();
        self.protect(&mut call, &body, crc32c).await?;
        call.body = body;
        let resp = self.execute(&call).await?;
        Ok(ObjectMeta {
            size,
            etag: resp
                .header("etag")
                .map(|e| strip_quotes(&e))
                .filter(|e| !e.is_empty()),
            last_modified: resp
                .header("last-modified")
                .and_then(|d| parse_http_date(&d)),
            content_type: opts.content_type.clone(),
            storage_class: self.inner.storage_class.clone(),
            user_metadata: opts.user_metadata.clone(),
            content_headers: opts.content_headers.clone(),
        })
    }

    /// Starts a multipart upload; returns its upload id.
    pub async fn create_multipart_upload(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> Result<String, S3Error> {
        let mut call = self
            .x_id(Call::new(Op::CreateMpu, Method::POST, Some(key)))
            .query("uploads", "");
        call.headers = self.object_headers(opts);
        call.headers.extend(self.new_object_headers());
        if self.sends_crc32c() {
            call = call.header("x-amz-checksum-algorithm", "CRC32C");
        }
        let started = Instant::now();
        let resp = self.execute(&call).await?;
        let upload_id = xml::parse_initiate_multipart(&resp.body, key)?;
        if resp.earlier_may_have_applied {
            self.abort_lost_twins(key, &upload_id, started.elapsed())
                .await;
        }
        Ok(upload_id)
    }

    /// A CreateMultipartUpload retried after an attempt whose answer was lost may have
    /// started two uploads, of which the client knows one: the other would stay open (and
    /// billed) for good. Uploads of the same key that the server says began no earlier than
    /// the call itself (judged by the server's own clock: at most `took` before ours) are
    /// that twin, and are aborted. One ListMultipartUploads, only after such a retry.
    async fn abort_lost_twins(&self, key: &str, ours: &str, took: Duration) {
        let uploads = match self.list_multipart_uploads(key).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(
                    key,
                    "cannot list uploads to find one a lost answer may have left open: {e}"
                );
                return;
            }
        };
        let Some(our_start) = uploads
            .iter()
            .find(|u| u.upload_id == ours)
            .and_then(|u| u.initiated)
        else {
            return;
        };
        // Initiated has a resolution of a second on most servers
        let earliest = our_start
            .checked_sub(took + Duration::from_secs(1))
            .unwrap_or(std::time::UNIX_EPOCH);
        for u in uploads.iter().filter(|u| {
            u.key == key && u.upload_id != ours && u.initiated.is_some_and(|t| t >= earliest)
        }) {
            tracing::info!(
                key,
                upload_id = %u.upload_id,
                "aborting the upload a lost answer to CreateMultipartUpload left open"
            );
            if let Err(e) = self.abort_multipart_upload(key, &u.upload_id).await {
                tracing::warn!(
                    key,
                    "cannot abort an upload left open by a lost answer: {e}"
                );
            }
        }
    }

    /// Uploads one part of an upload this mount created; returns its ETag (quotes stripped)
    /// and the CRC32C it carried, if any.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: impl Into<Payload>,
    ) -> Result<CompletedPart, S3Error> {
        let crc32c = self.sends_crc32c();
        self.upload_part_as(key, upload_id, part_number, body, crc32c)
            .await
    }

    /// Uploads one part of an upload created with (`crc32c`) or without the CRC32C algorithm.
    pub async fn upload_part_as(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: impl Into<Payload>,
        crc32c: bool,
    ) -> Result<CompletedPart, S3Error> {
        let body: Payload = body.into();
        let mut call = self
            .x_id(Call::new(Op::UploadPart, Method::PUT, Some(key)))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id);
        call.headers = self.sse_headers(SseFor::Data);
        let crc32c = self.protect(&mut call, &body, crc32c).await?;
        call.body = body;
        let resp = self.execute(&call).await?;
        let etag = resp
            .header("etag")
            .map(|e| strip_quotes(&e))
            .filter(|e| !e.is_empty())
            .ok_or_else(|| S3Error::InvalidResponse("UploadPart response without ETag".into()))?;
        Ok(CompletedPart {
            part_number,
            etag,
            crc32c,
        })
    }

    /// Completes a multipart upload (parts in order); `opts.if_match` / `if_none_match_any`
    /// make it conditional. Returns the new object's ETag.
    ///
    /// Where the server ignores conditions on Complete, they are checked with a HEAD first.
    /// A reply without ETag (Ceph RGW), a lost answer, a 5xx or NoSuchUpload after retries is
    /// not taken for a failure: the key is HEADed (for up to `confirm_grace` while an attempt
    /// may still be completing on the server) and the upload counts as done when the object
    /// there is the one these parts make.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        opts: &PutOptions,
    ) -> Result<String, S3Error> {
        let conditional = opts.if_none_match_any || opts.if_match.is_some();
        if conditional && !self.capabilities().conditional_complete.yes() {
            self.check_conditions_by_head(key, opts).await?;
        }
        let err = match self.complete_once(key, upload_id, parts, opts).await {
            Ok(Some(etag)) => return Ok(etag),
            Ok(None) => {
                let mut caps = self.inner.caps.write();
                if caps.complete_etag != Holds::No {
                    caps.complete_etag = Holds::No;
                    debug!("CompleteMultipartUpload answered without an ETag; HEADing for it");
                }
                S3Error::InvalidResponse("CompleteMultipartUpload response without ETag".into())
            }
            Err(e) => e,
        };
        match self.confirm_multipart(key, parts, &err).await {
            Confirmed::Landed(etag) => Ok(etag),
            Confirmed::Holds(etag)
                if err.is_precondition_failed() && self.learn_bare_if_match(opts, &etag) =>
            {
                self.complete_once(key, upload_id, parts, opts)
                    .await?
                    .ok_or(err)
            }
            Confirmed::Holds(_) | Confirmed::Unknown => Err(err),
        }
    }

    /// One CompleteMultipartUpload; `None`: the server named no ETag.
    async fn complete_once(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        opts: &PutOptions,
    ) -> Result<Option<String>, S3Error> {
        let mut call = self
            .x_id(Call::new(Op::CompleteMpu, Method::POST, Some(key)))
            .query("uploadId", upload_id)
            .header("content-type", "application/xml");
        call.headers.extend(self.condition_headers(opts));
        call.body = Payload::from(xml::build_complete_multipart(parts).into_bytes());
        call.check_ok_body = true;
        let resp = self.execute(&call).await?;
        let etag = xml::parse_complete_multipart(&resp.body, resp.status, key)?;
        Ok(etag
            .or_else(|| resp.header("etag"))
            .map(|e| strip_quotes(&e))
            .filter(|e| !e.is_empty()))
    }

    /// Aborts a multipart upload, freeing its parts.
    pub async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let call = self
            .x_id(Call::new(Op::AbortMpu, Method::DELETE, Some(key)))
            .query("uploadId", upload_id);
        self.execute(&call).await.map(|_| ())
    }

    /// Every object under `prefix` (no delimiter), page after page.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<super::ListedObject>, S3Error> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .list_objects_v2(&ListRequest {
                    prefix: prefix.to_string(),
                    continuation_token: token.take(),
                    ..ListRequest::default()
                })
                .await?;
            out.extend(page.objects);
            token = page.next_continuation_token;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Deletes one object. A missing object is not an error (S3 says 204 either way;
    /// servers that say 404 are treated the same).
    pub async fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        let call = self.x_id(Call::new(Op::Delete, Method::DELETE, Some(key)));
        match self.execute(&call).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes many objects (1000 per request). Returns the keys that could not be deleted,
    /// with why; keys that did not exist count as deleted.
    pub async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, S3Error)>, S3Error> {
        let mut failures = Vec::new();
        for chunk in keys.chunks(1000) {
            let body = xml::build_delete(chunk, true);
            let md5 =
                base64::engine::general_purpose::STANDARD.encode(Md5::digest(body.as_bytes()));
            let mut call = self
                .x_id(Call::new(Op::DeleteObjects, Method::POST, None))
                .query("delete", "")
                .header("content-md5", md5)
                .header("content-type", "application/xml");
            call.body = Payload::from(Bytes::from(body));
            call.check_ok_body = true;
            let resp = self.execute(&call).await?;
            let result = xml::parse_delete_result(&resp.body)?;
            for (key, code, message) in result.errors {
                if code == "NoSuchKey" {
                    continue;
                }
                let err = S3Error::service(resp.status, code, message, None, Some(&key));
                failures.push((key, err));
            }
        }
        Ok(failures)
    }

    /// Every in-progress multipart upload under `prefix` (all pages).
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<MultipartUploadInfo>, S3Error> {
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut call = Call::new(Op::ListMpu, Method::GET, None).query("uploads", "");
            if !prefix.is_empty() {
                call = call.query("prefix", prefix);
            }
            if self.inner.cfg.profile.list_encoding_url {
                call = call.query("encoding-type", "url");
            }
            if let Some((key_marker, id_marker)) = &marker {
                call = call.query("key-marker", key_marker.clone());
                if !id_marker.is_empty() {
                    call = call.query("upload-id-marker", id_marker.clone());
                }
            }
            let resp = self.execute(&call).await?;
            let page = xml::parse_list_multipart_uploads(&resp.body)?;
            if !page.skipped_keys.is_empty() {
                debug!(
                    count = page.skipped_keys.len(),
                    "skipping multipart uploads whose keys are not UTF-8"
                );
            }
            out.extend(page.uploads);
            match page.next {
                Some(next) if marker.as_ref() == Some(&next) => {
                    return Err(S3Error::InvalidResponse(
                        "ListMultipartUploads returned the same page markers twice".into(),
                    ))
                }
                Some(next) => marker = Some(next),
                None => return Ok(out),
            }
        }
    }
}

#[path = "confirm.rs"]
mod confirm;
#[path = "copy.rs"]
mod copy;
#[path = "integrity.rs"]
mod integrity;
#[path = "probe.rs"]
mod probe;
use confirm::Confirmed;

/// A request body that could not be read (a staged part file gone or cut short).
fn body_unreadable(e: std::io::Error) -> S3Error {
    S3Error::Config(format!(
        "cannot read the request body from the staging area: {e}"
    ))
}
pub use probe::PROBE_DIR;

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
