//! `TestServer`: starts the S3 server on its own tokio runtime and exposes
//! the test hooks (direct store access, counters, request log, faults,
//! credentials, stop/restart).

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use s3s::service::S3ServiceBuilder;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::faults::{Fault, RandomFaults};
use crate::front::Front;
use crate::s3_impl::{Access, Auth, Backend};
use crate::state::{RequestRecord, Shared};
use crate::store::{
    Metadata, ObjectAttrs, ObjectMeta, Store, WriteConditions, DEFAULT_MIN_PART_SIZE,
};
use crate::tls::TlsConfig;

/// Settings of a [`TestServer`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; loopback by default.
    pub host: IpAddr,
    /// 0 = any free port.
    pub port: u16,
    /// Bucket created at start.
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// Minimum size of non-last parts at CompleteMultipartUpload.
    pub min_part_size: u64,
    /// Accept unsigned requests (signed ones are still verified).
    pub allow_anonymous: bool,
    /// How many requests the log keeps (oldest dropped first).
    pub request_log_capacity: usize,
    /// Serve the unsigned `/__control/` API (see the `control` module).
    pub control_api: bool,
    /// Serve https with this certificate instead of plain http.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            bucket: "test-bucket".into(),
            access_key: "AKIATEST".into(),
            secret_key: "testsecret".into(),
            min_part_size: DEFAULT_MIN_PART_SIZE,
            allow_anonymous: false,
            request_log_capacity: 5000,
            control_api: false,
            tls: None,
        }
    }
}

struct Running {
    shutdown: watch::Sender<bool>,
    done: JoinHandle<()>,
}

/// An S3 server on 127.0.0.1 with an in-memory store.
///
/// It runs on its own runtime, so it works the same from `#[tokio::test]`
/// and plain `#[test]` functions; every hook is a plain (non-async) method.
/// Dropping it shuts the server down.
pub struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    credentials: Mutex<(String, String)>,
    rt: Option<tokio::runtime::Runtime>,
    running: Mutex<Option<Running>>,
    /// Set when serving https (boxed: keeps `TestServer` small for enums that hold one).
    tls: Option<Box<Tls>>,
}

struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    ca_pem: Option<String>,
}

impl TestServer {
    /// Starts with [`ServerConfig::default`]: bucket `test-bucket`,
    /// credentials `AKIATEST` / `testsecret`, a free port on 127.0.0.1.
    pub async fn start() -> TestServer {
        Self::start_with_blocking(ServerConfig::default())
    }

    pub async fn start_with(config: ServerConfig) -> TestServer {
        Self::start_with_blocking(config)
    }

    /// Same as [`TestServer::start`], for code outside async contexts.
    pub fn start_blocking() -> TestServer {
        Self::start_with_blocking(ServerConfig::default())
    }

    /// Serves https with a fresh private CA and a certificate from it for `127.0.0.1` and
    /// `localhost`; [`TestServer::ca_pem`] is that CA, which no client trusts by default.
    pub fn start_tls_blocking() -> TestServer {
        let tls = TlsConfig::generate(&["127.0.0.1", "localhost"])
            .expect("generating the test certificates");
        Self::start_with_blocking(ServerConfig {
            tls: Some(tls),
            ..ServerConfig::default()
        })
    }

    /// Panics when the server cannot start (see [`TestServer::try_start`]).
    pub fn start_with_blocking(config: ServerConfig) -> TestServer {
        Self::try_start(config).expect("starting the S3 test server")
    }

    /// Binds, creates the bucket and serves in the background.
    pub fn try_start(config: ServerConfig) -> io::Result<TestServer> {
        let shared = Arc::new(Shared::new(&config.bucket, config.request_log_capacity));
        shared
            .credentials
            .write()
            .insert(config.access_key.clone(), config.secret_key.clone());
        shared
            .allow_anonymous
            .store(config.allow_anonymous, Ordering::Relaxed);
        shared
            .control_api
            .store(config.control_api, Ordering::Relaxed);
        {
            let mut store = shared.store.lock();
            store.min_part_size = config.min_part_size;
            store.create_bucket(&config.bucket).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bucket: {e:?}"))
            })?;
        }
        let tls = match &config.tls {
            Some(t) => Some(Box::new(Tls {
                acceptor: t.acceptor()?,
                ca_pem: t.ca_pem.clone(),
            })),
            None => None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-test-server")
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind((config.host, config.port))?;
        let addr = listener.local_addr()?;
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        let running = spawn_server(&rt, listener, shared.clone(), acceptor)?;
        Ok(TestServer {
            shared,
            addr,
            credentials: Mutex::new((config.access_key, config.secret_key)),
            rt: Some(rt),
            running: Mutex::new(Some(running)),
            tls,
        })
    }

    // ---- addresses and credentials ----

    /// `http://127.0.0.1:PORT`, or `https://` when serving TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate (PEM) that signed the server's certificate, when serving https
    /// with a generated one ([`TestServer::start_tls_blocking`], [`TlsConfig::generate`]).
    pub fn ca_pem(&self) -> Option<String> {
        self.tls.as_ref().and_then(|t| t.ca_pem.clone())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn bucket(&self) -> &str {
        &self.shared.bucket
    }

    /// Always "us-east-1" (any region in a signature is accepted).
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    pub fn access_key(&self) -> String {
        self.credentials.lock().0.clone()
    }

    pub fn secret_key(&self) -> String {
        self.credentials.lock().1.clone()
    }

    /// Replaces all credentials by this pair (e.g. rotate the secret so a
    /// running client starts getting 403 SignatureDoesNotMatch).
    pub fn set_credentials(&self, access_key: &str, secret_key: &str) {
        let mut map = self.shared.credentials.write();
        map.clear();
        map.insert(access_key.to_owned(), secret_key.to_owned());
        *self.credentials.lock() = (access_key.to_owned(), secret_key.to_owned());
    }

    /// Accepts one more access key.
    pub fn add_credentials(&self, access_key: &str, secret_key: &str) {
        self.shared
            .credentials
            .write()
            .insert(access_key.to_owned(), secret_key.to_owned());
    }

    /// Accept unsigned requests or not (signed requests are always verified).
    pub fn set_allow_anonymous(&self, allow: bool) {
        self.shared.allow_anonymous.store(allow, Ordering::Relaxed);
    }

    // ---- direct store access (no HTTP, not counted) ----

    /// Stores an object in the default bucket.
    pub fn put_object(&self, key: &str, data: impl Into<Bytes>) -> ObjectMeta {
        self.put_object_with_meta(key, data, BTreeMap::new(), None)
    }

    /// Stores an object with user metadata (names without `x-amz-meta-`)
    /// and a content type.
    pub fn put_object_with_meta(
        &self,
        key: &str,
        data: impl Into<Bytes>,
        metadata: Metadata,
        content_type: Option<&str>,
    ) -> ObjectMeta {
        let attrs = ObjectAttrs {
            content_type: content_type.map(str::to_owned),
            metadata,
            ..ObjectAttrs::default()
        };
        self.put_object_with_attrs(key, data, attrs)
    }

    /// Stores an object with all its standard headers and user metadata given.
    pub fn put_object_with_attrs(
        &self,
        key: &str,
        data: impl Into<Bytes>,
        attrs: ObjectAttrs,
    ) -> ObjectMeta {
        self.shared
            .store
            .lock()
            .put_object(
                self.bucket(),
                key,
                data.into(),
                attrs,
                &WriteConditions::default(),
            )
            .expect("put_object")
    }

    pub fn get_object(&self, key: &str) -> Option<Bytes> {
        let store = self.shared.store.lock();
        store
            .buckets
            .get(self.bucket())
            .and_then(|b| b.objects.get(key))
            .map(|o| o.data.clone())
    }

    pub fn object_meta(&self, key: &str) -> Option<ObjectMeta> {
        self.shared
            .store
            .lock()
            .object_meta(self.bucket(), key)
            .ok()
    }

    /// All keys of the default bucket, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.shared
            .store
            .lock()
            .keys(self.bucket())
            .unwrap_or_default()
    }

    /// Returns whether the object existed.
    pub fn delete_object(&self, key: &str) -> bool {
        self.shared
            .store
            .lock()
            .delete_object(self.bucket(), key)
            .unwrap_or(false)
    }

    /// Uploads in progress in the default bucket: (key, upload id).
    pub fn multipart_uploads(&self) -> Vec<(String, String)> {
        self.shared
            .store
            .lock()
            .list_uploads(self.bucket(), "")
            .unwrap_or_default()
            .into_iter()
            .map(|u| (u.key, u.upload_id))
            .collect()
    }

    /// Part numbers and sizes of an upload in progress.
    pub fn upload_parts(&self, key: &str, upload_id: &str) -> Vec<(i32, u64)> {
        self.shared
            .store
            .lock()
            .list_parts(self.bucket(), key, upload_id)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, p)| (n, p.data.len() as u64))
            .collect()
    }

    /// Anything else, under the store lock (other buckets, timestamps...).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.shared.store.lock())
    }

    pub fn set_min_part_size(&self, bytes: u64) {
        self.shared.store.lock().min_part_size = bytes;
    }

    // ---- counting and logging ----

    /// Requests of this operation received (including ones that faults
    /// answered) since start or the last reset.
    pub fn count(&self, op: &str) -> u64 {
        self.shared
            .stats
            .lock()
            .counts
            .get(op)
            .copied()
            .unwrap_or(0)
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.shared.stats.lock().counts.clone()
    }

    /// Sum of all counts.
    pub fn total_requests(&self) -> u64 {
        self.shared.stats.lock().counts.values().sum()
    }

    pub fn reset_counts(&self) {
        let mut stats = self.shared.stats.lock();
        stats.counts.clear();
        for e in stats.in_flight.values_mut() {
            e.1 = e.0;
        }
    }

    /// The most requests of this operation the server was handling at once (since start or
    /// the last reset), counted from arrival until the answer's head.
    pub fn peak_in_flight(&self, op: &str) -> u64 {
        self.shared
            .stats
            .lock()
            .in_flight
            .get(op)
            .map_or(0, |e| e.1)
    }

    /// Request body bytes read (as on the wire, aws-chunked framing included).
    pub fn bytes_received(&self) -> u64 {
        self.shared.bytes_received.load(Ordering::Relaxed)
    }

    /// Response body bytes sent.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::Relaxed)
    }

    pub fn reset_bytes(&self) {
        self.shared.bytes_received.store(0, Ordering::Relaxed);
        self.shared.bytes_sent.store(0, Ordering::Relaxed);
    }

    /// The last requests (up to the configured capacity), oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.stats.lock().log.iter().cloned().collect()
    }

    /// Logged requests of one operation.
    pub fn requests_for(&self, op: &str) -> Vec<RequestRecord> {
        self.shared
            .stats
            .lock()
            .log
            .iter()
            .filter(|r| r.op == op)
            .cloned()
            .collect()
    }

    pub fn clear_request_log(&self) {
        self.shared.stats.lock().log.clear();
    }

    /// Counts, byte counters and log all reset.
    pub fn reset_stats(&self) {
        self.reset_counts();
        self.reset_bytes();
        self.clear_request_log();
    }

    /// Requests where our operation name differed from the one s3s
    /// resolved: (ours, s3s). Should stay empty.
    pub fn op_mismatches(&self) -> Vec<(String, String)> {
        self.shared.op_mismatches.lock().clone()
    }

    // ---- faults ----

    /// Behave like another server where it departs from AWS (e.g. [`Dialect::ceph_rgw`]).
    pub fn set_dialect(&self, dialect: crate::state::Dialect) {
        *self.shared.dialect.write() = dialect;
    }

    pub fn add_fault(&self, fault: Fault) {
        self.shared.faults.lock().add(fault);
    }

    /// That fraction of all requests fails with one of: 500 InternalError,
    /// 503 SlowDown, dropped connection, truncated body, 2 s stall.
    pub fn set_random_faults(&self, probability: f64, seed: u64) {
        self.set_random_faults_config(RandomFaults::new(probability, seed));
    }

    pub fn set_random_faults_config(&self, random: RandomFaults) {
        self.shared.faults.lock().set_random(Some(random));
    }

    /// Removes scripted and random faults.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().clear();
    }

    /// Faults fired so far.
    pub fn faults_injected(&self) -> u64 {
        self.shared.faults.lock().injected()
    }

    /// Scripted faults still armed.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.shared.faults.lock().pending()
    }

    // ---- lifecycle ----

    pub fn is_running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Stops listening and drops every open connection (in-flight requests
    /// get no answer). The store is kept; see [`TestServer::restart`].
    pub async fn stop(&self) {
        let running = self.running.lock().take();
        if let Some(r) = running {
            let _ = r.shutdown.send(true);
            let _ = r.done.await;
        }
    }

    pub fn stop_blocking(&self) {
        let running = self.running.lock().take();
        if let Some(r) = running {
            let _ = r.shutdown.send(true);
            let _ = futures::executor::block_on(r.done);
        }
    }

    /// Serves again on the same port, with the same store.
    pub async fn restart(&self) {
        self.stop().await;
        for _ in 0..50 {
            match self.try_listen() {
                Ok(()) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        self.try_listen().expect("rebinding the S3 test server");
    }

    pub fn restart_blocking(&self) {
        self.stop_blocking();
        for _ in 0..50 {
            match self.try_listen() {
                Ok(()) => return,
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        self.try_listen().expect("rebinding the S3 test server");
    }

    fn try_listen(&self) -> io::Result<()> {
        let listener = std::net::TcpListener::bind(self.addr)?;
        let rt = self.rt.as_ref().expect("runtime");
        let acceptor = self.tls.as_ref().map(|t| t.acceptor.clone());
        let running = spawn_server(rt, listener, self.shared.clone(), acceptor)?;
        *self.running.lock() = Some(running);
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.lock().take() {
            let _ = r.shutdown.send(true);
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn spawn_server(
    rt: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> io::Result<Running> {
    listener.set_nonblocking(true)?;
    let s3 = {
        let mut b = S3ServiceBuilder::new(Backend {
            shared: shared.clone(),
        });
        b.set_auth(Auth {
            shared: shared.clone(),
        });
        b.set_access(Access {
            shared: shared.clone(),
        });
        b.build()
    };
    let front = Front { shared, s3 };
    let (tx, rx) = watch::channel(false);
    let done = rt.spawn(accept_loop(listener, front, tls, rx));
    Ok(Running { shutdown: tx, done })
}

async fn accept_loop(
    listener: std::net::TcpListener,
    front: Front,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot use listener: {e}");
            return;
        }
    };
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let svc = front.clone();
                    let tls = tls.clone();
                    conns.spawn(async move {
                        match tls {
                            None => serve_connection(stream, svc).await,
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(stream) => serve_connection(stream, svc).await,
                                Err(e) => tracing::debug!("TLS handshake failed: {e}"),
                            },
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_connection<S>(stream: S, svc: Front)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        tracing::debug!("connection ended: {e}");
    }
}
