//! HTTP plumbing under the S3 client: endpoint parsing, hyper connection pool, TLS roots,
//! request bodies that report progress, and stall timeouts.
//!
//! hyper is used directly rather than through reqwest because reqwest parses every URL with
//! the `url` crate, which resolves `.` and `..` path segments (even `%2E%2E`): an object
//! key like `a/../b` would silently become `b`. Here the request target is built as an
//! `http::Uri`, which is sent as is.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::http::uri::{Authority, Scheme};
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::error::S3Error;
use super::payload::{Payload, FILE_CHUNK};
use super::proxy::{Connector, Proxy};
use crate::buffer_pool::BufferPool;

/// The pooled HTTP client.
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<Connector>, RequestBody>;

/// Where requests go: scheme, host, port and an optional base path, from the endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub https: bool,
    /// Host name or IP literal (IPv6 in brackets), without port.
    pub host: String,
    /// Port, when not the scheme's default.
    pub port: Option<u16>,
    /// Path prefix of the endpoint without a trailing slash; usually empty.
    pub base_path: String,
}

impl Endpoint {
    pub fn parse(endpoint: &str) -> Result<Endpoint, S3Error> {
        let bad = |why: &str| S3Error::Config(format!("endpoint {endpoint:?}: {why}"));
        let uri: Uri = endpoint.trim().parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(_) => return Err(bad("scheme must be http or https")),
            None => return Err(bad("needs http:// or https://")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let default_port = if https { 443 } else { 80 };
        let port = uri.port_u16().filter(|p| *p != default_port);
        if uri.query().is_some() {
            return Err(bad("must not have a query string"));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Endpoint {
            https,
            host: host.to_ascii_lowercase(),
            port,
            base_path,
        })
    }

    /// True when the host is an IP address (virtual-hosted style cannot work there).
    pub fn host_is_ip(&self) -> bool {
        self.host.starts_with('[') || self.host.parse::<std::net::Ipv4Addr>().is_ok()
    }

    /// `host[:port]` with an optional bucket label in front.
    pub fn authority(&self, bucket_label: Option<&str>) -> String {
        let mut a = String::new();
        if let Some(b) = bucket_label {
            a.push_str(b);
            a.push('.');
        }
        a.push_str(&self.host);
        if let Some(p) = self.port {
            a.push(':');
            a.push_str(&p.to_string());
        }
        a
    }

    /// A full URI from an authority and an already-encoded path and query.
    pub fn uri(&self, authority: &str, encoded_path: &str, query: &str) -> Result<Uri, S3Error> {
        let mut pq = String::with_capacity(encoded_path.len() + query.len() + 1);
        pq.push_str(encoded_path);
        if !query.is_empty() {
            pq.push('?');
            pq.push_str(query);
        }
        let authority: Authority = authority
            .parse()
            .map_err(|_| S3Error::Config(format!("bad host {authority:?}")))?;
        Uri::builder()
            .scheme(if self.https {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            })
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|e| S3Error::Config(format!("cannot build request URI: {e}")))
    }
}

fn load_pem_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&data) {
        match item {
            Ok(c) => certs.push(c),
            Err(e) => return Err(format!("bad PEM in {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("no certificates in {}", path.display()));
    }
    Ok(certs)
}

/// Trusted roots: the system's, plus `extra` PEM bundles (`ca_bundle`, `AWS_CA_BUNDLE`).
/// Problems only matter for https endpoints; for http ones they are logged and ignored.
fn tls_config(extra: &[std::path::PathBuf], https: bool) -> Result<rustls::ClientConfig, S3Error> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        debug!(error = %e, "skipping unreadable system CA certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    debug!(added, ignored, "loaded system CA certificates");
    for path in extra {
        match load_pem_bundle(path) {
            Ok(certs) => {
                let (added, ignored) = roots.add_parsable_certificates(certs);
                debug!(path = %path.display(), added, ignored, "loaded extra CA bundle");
                if added == 0 && https {
                    return Err(S3Error::Config(format!(
                        "CA bundle {} holds no usable certificate",
                        path.display()
                    )));
                }
            }
            Err(e) if https => return Err(S3Error::Config(e)),
            Err(e) => warn!("ignoring CA bundle (endpoint is plain http): {e}"),
        }
    }
    if https && roots.is_empty() {
        return Err(S3Error::Config(
            "no trusted CA certificates found (set AWS_CA_BUNDLE or --ca-bundle)".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| S3Error::Config(format!("TLS setup: {e}")))?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Settings for [`build_client`].
pub(crate) struct ClientSettings<'a> {
    pub https: bool,
    pub connect_timeout: Duration,
    pub max_idle_per_host: usize,
    pub ca_bundles: &'a [std::path::PathBuf],
    /// Connections go through this proxy's CONNECT tunnels.
    pub proxy: Option<&'a Proxy>,
}

/// Builds the pooled client: TCP_NODELAY, connect timeout, keep-alive, rustls.
pub(crate) fn build_client(s: &ClientSettings<'_>) -> Result<HttpClient, S3Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(s.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = tls_config(s.ca_bundles, s.https)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(Connector::new(http, s.proxy));
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(s.max_idle_per_host.max(1))
        .http1_max_buf_size(HTTP1_READ_BUFFER)
        .build(connector))
}

/// Most bytes a connection's read buffer grows to (hyper's default is ~400 KiB): with 64
/// requests in flight that alone would be 25 MiB outside the memory budget; 128 KiB reads
/// as fast as the default here.
const HTTP1_READ_BUFFER: usize = 128 * 1024;

/// When a request last made progress (a body chunk went out or came in).
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn deadline(&self, limit: Duration) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + limit
    }

    /// Runs `fut`, failing with [`S3Error::Timeout`] once nothing has moved for `limit`.
    pub async fn run<F: std::future::Future>(
        &self,
        fut: F,
        limit: Duration,
    ) -> Result<F::Output, S3Error> {
        tokio::pin!(fut);
        loop {
            let deadline = self.deadline(limit);
            tokio::select! {
                out = &mut fut => return Ok(out),
                _ = tokio::time::sleep_until(deadline) => {
                    if self.deadline(limit) <= Instant::now() {
                        return Err(S3Error::Timeout);
                    }
                }
            }
        }
    }
}

/// A request body handed to hyper in slices, so that upload progress can be seen by the stall
/// timer: bytes in memory (no copies; cloning `Bytes` for a retry is free), or a file range
/// read a chunk at a time on a blocking thread, one chunk ahead of hyper.
pub(crate) struct RequestBody {
    source: Source,
    progress: Option<Progress>,
}

enum Source {
    Bytes(Bytes),
    File {
        path: Arc<std::path::PathBuf>,
        /// Next byte to read, and the end of the range.
        pos: u64,
        end: u64,
        /// Bytes not yet handed to hyper (`pos` counts what was read).
        left: u64,
        /// The file, between reads.
        file: Option<std::fs::File>,
        reading: Option<tokio::task::JoinHandle<std::io::Result<(std::fs::File, Bytes)>>>,
    },
    /// Zero bytes not yet handed to hyper, as slices of one static block.
    Zeros {
        left: u64,
    },
}

const BODY_CHUNK: usize = 64 * 1024;

impl RequestBody {
    pub fn new(data: Payload, progress: Progress) -> Self {
        let source = match data {
            Payload::Bytes(b) => Source::Bytes(b),
            Payload::File { path, offset, len } => Source::File {
                path,
                pos: offset,
                end: offset + len,
                left: len,
                file: None,
                reading: None,
            },
            Payload::Zeros(len) => Source::Zeros { left: len },
            Payload::WithCrc32c(body, _) => return RequestBody::new(*body, progress),
        };
        RequestBody {
            source,
            progress: Some(progress),
        }
    }
}

impl Source {
    /// Starts reading the next chunk of a file range, if there is one and none is under way.
    fn read_ahead(&mut self) {
        if let Source::File {
            path,
            pos,
            end,
            file,
            reading,
            ..
        } = self
        {
            if reading.is_none() && *pos < *end {
                let n = (*end - *pos).min(FILE_CHUNK as u64) as usize;
                let (path, at, f) = (path.clone(), *pos, file.take());
                *pos += n as u64;
                *reading = Some(tokio::task::spawn_blocking(move || {
                    super::payload::read_chunk(f, &path, at, n)
                }));
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        let chunk = match &mut this.source {
            Source::Bytes(data) => {
                if data.is_empty() {
                    return Poll::Ready(None);
                }
                let n = data.len().min(BODY_CHUNK);
                data.split_to(n)
            }
            Source::Zeros { left } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let block = &super::payload::ZERO_BLOCK;
                let n = (*left).min(block.len() as u64) as usize;
                *left -= n as u64;
                Bytes::from_static(&block[..n])
            }
            Source::File { .. } => {
                this.source.read_ahead();
                let Source::File {
                    reading,
                    file,
                    left,
                    ..
                } = &mut this.source
                else {
                    return Poll::Ready(None);
                };
                let Some(handle) = reading.as_mut() else {
                    return Poll::Ready(None);
                };
                let got = match Pin::new(handle).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r,
                };
                *reading = None;
                let (f, bytes) = match got {
                    Ok(Ok(x)) => x,
                    Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Err(e) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
                };
                *file = Some(f);
                *left -= bytes.len() as u64;
                this.source.read_ahead();
                bytes
            }
        };
        if let Some(p) = &this.progress {
            p.touch();
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Bytes(b) => b.is_empty(),
            Source::File { left, .. } | Source::Zeros { left } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Bytes(b) => SizeHint::with_exact(b.len() as u64),
            Source::File { left, .. } | Source::Zeros { left } => SizeHint::with_exact(*left),
        }
    }
}

/// Bodies at least this large are read into recycled buffers (a listing page of 1,000 keys
/// is 150-400 KiB: a fresh one would fault in every page of it, for each page listed).
const POOLED_BODY: usize = 64 * 1024;

/// Reads a whole response body, failing with [`S3Error::Timeout`] if it stalls for
/// `limit`, and with a (retryable) transport error if it breaks off. Large bodies (object data)
/// are gathered in a buffer from `pool`, which gets it back when the bytes are dropped.
pub(crate) async fn read_body(
    mut body: Incoming,
    progress: &Progress,
    limit: Duration,
    expected_len: Option<u64>,
    pool: &Arc<BufferPool>,
    mut units: Option<UnitCrcs>,
) -> Result<(Bytes, Vec<u32>), S3Error> {
    let cap = expected_len.map_or(8 * 1024, |n| n.min(256 * 1024 * 1024) as usize);
    let mut buf: Option<Vec<u8>> = None;
    // a pooled body starts at a page boundary, after this many bytes (see take_page_aligned)
    let mut skip = 0;
    let mut only: Option<Bytes> = None;
    loop {
        let next = progress
            .run(
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)),
                limit,
            )
            .await?;
        match next {
            None => break,
            Some(Ok(frame)) => {
                progress.touch();
                if let Ok(data) = frame.into_data() {
                    if let Some(u) = units.as_mut() {
                        u.feed(&data);
                    }
                    // Keep a lone chunk as is; only copy once a second one arrives.
                    match (&mut buf, only.take()) {
                        (None, None) => only = Some(data),
                        (Some(b), _) => b.extend_from_slice(&data),
                        (None, Some(first)) => {
                            let mut b = if cap >= POOLED_BODY {
                                let b = pool.take_page_aligned(cap);
                                skip = b.len();
                                b
                            } else {
                                Vec::with_capacity(cap)
                            };
                            b.extend_from_slice(&first);
                            b.extend_from_slice(&data);
                            buf = Some(b);
                        }
                    }
                }
            }
            Some(Err(e)) => {
                if let Some(b) = buf {
                    pool.give(b);
                }
                return Err(S3Error::transport(
                    format!("response body broke off: {}", error_chain(&e)),
                    false,
                ));
            }
        }
    }
    let out = match (only, buf) {
        (Some(b), _) => b,
        (None, Some(b)) if b.capacity() >= POOLED_BODY => pool.freeze_from(b, skip),
        (None, Some(b)) => Bytes::from(b),
        (None, None) => Bytes::new(),
    };
    if let Some(n) = expected_len {
        if out.len() as u64 != n {
            return Err(S3Error::transport(
                format!(
                    "response body has {} bytes, Content-Length said {n}",
                    out.len()
                ),
                false,
            ));
        }
    }
    Ok((out, units.map(UnitCrcs::finish).unwrap_or_default()))
}

/// The CRC32C of each `unit` bytes of a body, computed frame by frame as it arrives, while
/// its bytes are still in the CPU's caches (the same pass over bytes that have left them cost
/// the data cache's writer 0.11 s per GiB, more than the body's copy). The last one covers
/// what is left, and is shorter.
#[derive(Debug)]
pub(crate) struct UnitCrcs {
    unit: usize,
    crc: u32,
    filled: usize,
    done: Vec<u32>,
}

impl UnitCrcs {
    pub(crate) fn new(unit: usize) -> UnitCrcs {
        UnitCrcs {
            unit: unit.max(1),
            crc: 0,
            filled: 0,
            done: Vec::new(),
        }
    }

    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = (self.unit - self.filled).min(data.len());
            self.crc = crc32c::crc32c_append(self.crc, &data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == self.unit {
                self.done.push(self.crc);
                self.crc = 0;
                self.filled = 0;
            }
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u32> {
        if self.filled > 0 {
            self.done.push(self.crc);
        }
        self.done
    }
}

/// `outer: inner: innermost`, without repeats.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Classifies a failure of the HTTP client (no response at all). A refused server
/// certificate is [`S3Error::Certificate`], everything else a transport error.
pub(crate) fn map_client_error(e: &hyper_util::client::legacy::Error) -> S3Error {
    match certificate_error(e) {
        Some(why) => S3Error::Certificate(why),
        None => S3Error::transport(error_chain(e), e.is_connect()),
    }
}

/// What rustls found wrong with the server's certificate, if that is what failed.
/// (The `rustls::Error` comes up inside an `io::Error`, itself inside another one, and
/// `io::Error::source()` skips what it wraps, hence `get_ref`.)
fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(cert) = invalid_certificate(err) {
            return Some(match cert {
                rustls::CertificateError::UnknownIssuer => {
                    "it is not signed by a trusted CA (UnknownIssuer)".to_owned()
                }
                other => other.to_string(),
            });
        }
        cur = err.source();
    }
    None
}

/// `err`, or what it wraps as an `io::Error` (at any depth), as a certificate error.
fn invalid_certificate<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::CertificateError> {
    if let Some(rustls::Error::InvalidCertificate(cert)) = err.downcast_ref::<rustls::Error>() {
        return Some(cert);
    }
    let inner = err.downcast_ref::<std::io::Error>()?.get_ref()?;
    invalid_certificate(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_crcs_do_not_depend_on_how_the_body_arrives() {
        let body: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
        let want: Vec<u32> = body.chunks(65_536).map(crc32c::crc32c).collect();
        for frame in [1usize, 1000, 16_384, 65_536, 65_537, 300_001] {
            let mut u = UnitCrcs::new(65_536);
            for piece in body.chunks(frame) {
                u.feed(piece);
            }
            assert_eq!(u.finish(), want, "frames of {frame}");
        }
        assert!(UnitCrcs::new(65_536).finish().is_empty());
    }

    #[test]
    fn endpoint_parse() {
        let e = Endpoint::parse("http://127.0.0.1:9000").unwrap();
        assert!(!e.https);
        assert_eq!(e.host, "127.0.0.1");
        assert_eq!(e.port, Some(9000));
        assert_eq!(e.base_path, "");
        assert!(e.host_is_ip());
        assert_eq!(e.authority(None), "127.0.0.1:9000");

        let e = Endpoint::parse("https://S3.eu-west-1.amazonaws.com/").unwrap();
        assert!(e.https);
        assert_eq!(e.port, None);
        assert_eq!(e.host, "s3.eu-west-1.amazonaws.com");
        assert_eq!(e.authority(Some("b")), "b.s3.eu-west-1.amazonaws.com");
        assert!(!e.host_is_ip());

        let e = Endpoint::parse("https://host:443/base/").unwrap();
        assert_eq!(e.port, None);
        assert_eq!(e.base_path, "/base");

        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!(e.authority(None), "[::1]:9000");
        assert!(e.host_is_ip());

        assert!(Endpoint::parse("127.0.0.1:9000").is_err());
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://x/?a=b").is_err());
    }

    #[test]
    fn uri_keeps_dot_segments() {
        let e = Endpoint::parse("http://127.0.0.1:9000").unwrap();
        let u = e.uri("127.0.0.1:9000", "/b/a/../c/./d//e", "x=1").unwrap();
        assert_eq!(u.path(), "/b/a/../c/./d//e");
        assert_eq!(u.query(), Some("x=1"));
        assert_eq!(u.to_string(), "http://127.0.0.1:9000/b/a/../c/./d//e?x=1");
    }

    #[test]
    fn ca_bundle_errors_matter_only_for_https() {
        let missing = vec![std::path::PathBuf::from("/nonexistent/ca.pem")];
        assert!(tls_config(&missing, false).is_ok());
        assert!(matches!(
            tls_config(&missing, true),
            Err(S3Error::Config(_))
        ));
    }

    #[test]
    fn certificate_errors_are_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let why = certificate_error(&io).unwrap();
        assert!(why.contains("not signed by a trusted CA"), "{why}");
        // hyper-rustls wraps tokio-rustls's io::Error in another one.
        let twice = std::io::Error::other(io);
        assert_eq!(certificate_error(&twice), Some(why));
        let other = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert_eq!(certificate_error(&other), None);
        assert_eq!(certificate_error(&std::io::Error::other("reset")), None);
    }

    #[tokio::test]
    async fn stall_timer() {
        let p = Progress::new();
        let quick = p.run(async { 7 }, Duration::from_millis(50)).await;
        assert_eq!(quick.unwrap(), 7);
        let slow = p
            .run(
                tokio::time::sleep(Duration::from_secs(5)),
                Duration::from_millis(30),
            )
            .await;
        assert_eq!(slow, Err(S3Error::Timeout));
        // Progress keeps a slow future alive.
        let p = Progress::new();
        let p2 = p.clone();
        let ticking = async move {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(15)).await;
                p2.touch();
            }
            1
        };
        assert_eq!(p.run(ticking, Duration::from_millis(40)).await.unwrap(), 1);
    }

    #[test]
    fn request_body_slices() {
        let data = Bytes::from(vec![7u8; BODY_CHUNK * 2 + 5]);
        let mut body = RequestBody::new(data.into(), Progress::new());
        assert_eq!(body.size_hint().exact(), Some((BODY_CHUNK * 2 + 5) as u64));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut sizes = Vec::new();
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
            sizes.push(f.into_data().map(|d| d.len()).unwrap_or(0));
        }
        assert_eq!(sizes, vec![BODY_CHUNK, BODY_CHUNK, 5]);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_zeros_body_streams_its_length_of_zeros() {
        let len = BODY_CHUNK * 3 + 11;
        let body = RequestBody::new(Payload::zeros(len as u64), Progress::new());
        assert_eq!(body.size_hint().exact(), Some(len as u64));
        let got = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(got.len(), len);
        assert!(got.iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn a_file_body_streams_its_range_and_fails_when_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let data: Vec<u8> = (0..FILE_CHUNK * 2 + 9).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let payload = Payload::File {
            path: Arc::new(path.clone()),
            offset: 3,
            len: (data.len() - 3) as u64,
        };
        let body = RequestBody::new(payload.clone(), Progress::new());
        assert_eq!(body.size_hint().exact(), Some((data.len() - 3) as u64));
        let got = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&got[..], &data[3..]);
        // the file lost its tail: the body fails rather than send fewer bytes
        std::fs::write(&path, &data[..FILE_CHUNK]).unwrap();
        let body = RequestBody::new(payload, Progress::new());
        assert!(http_body_util::BodyExt::collect(body).await.is_err());
    }
}
