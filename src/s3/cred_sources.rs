//! Credential sources that change over time: keys that expire and are fetched again
//! (`credential_process`, EC2 instance metadata, the ECS container endpoint) and key files
//! that are rewritten in place (rotating credentials). All are [`CredentialSource`]s.
//!
//! Fetching is blocking (a child process, or hyper requests to a loopback/link-local service
//! with a short timeout, run on a runtime of their own): [`RefreshingCredentials`] refreshes in
//! a background thread ahead of expiry, so a request only waits when the keys it holds have
//! already expired, and then (on a tokio worker) through `block_in_place`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::header::{HeaderValue, CONTENT_LENGTH};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::{Mutex, RwLock};
use tracing::{debug, warn};

use super::credentials::{CredentialSource, Credentials};

/// Keys and when they stop working.
#[derive(Clone, PartialEq, Eq)]
pub struct Expiring {
    pub credentials: Credentials,
    pub expires: Option<SystemTime>,
}

impl fmt::Debug for Expiring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expiring")
            .field("credentials", &self.credentials)
            .field("expires", &self.expires)
            .finish()
    }
}

/// Something that can produce fresh keys (blocking: callable from any thread, but a caller on
/// a tokio worker goes through [`off_the_runtime`]).
pub trait Fetcher: Send + Sync + 'static {
    fn fetch(&self) -> Result<Expiring, String>;
    /// Where keys come from, for messages ("credential_process of profile x").
    fn describe(&self) -> String;
}

/// Refresh this long before expiry (in the background).
const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// Treat keys as expired this long before their stated expiry (clock skew, request time).
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Never fetch more often than this (a source that keeps handing out expiring keys).
const MIN_FETCH_INTERVAL: Duration = Duration::from_secs(1);

/// Runs blocking `f`: on a worker of a multi-thread tokio runtime through `block_in_place`, so
/// the worker's other tasks move to other threads meanwhile; elsewhere directly. (A
/// current-thread runtime has no other thread to move them to: its caller waits either way.)
pub fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

struct RefreshState {
    current: Expiring,
    last_fetch: Instant,
}

/// Keys from a [`Fetcher`], refreshed before they expire and once after a 403.
pub struct RefreshingCredentials {
    fetcher: Arc<dyn Fetcher>,
    state: Arc<RwLock<RefreshState>>,
    refreshing: Arc<AtomicBool>,
    /// Held by the one fetch of expired keys under way: requests that find them expired at
    /// the same time wait for it and take its keys (one fetch, not one per request).
    fetch_gate: Arc<Mutex<()>>,
}

impl fmt::Debug for RefreshingCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshingCredentials")
            .field("source", &self.fetcher.describe())
            .finish_non_exhaustive()
    }
}

impl RefreshingCredentials {
    /// Fetches once; fails if that fails.
    pub fn new(fetcher: Arc<dyn Fetcher>) -> Result<RefreshingCredentials, String> {
        let first = fetcher.fetch()?;
        Ok(Self::with_initial(fetcher, first))
    }

    /// Starts from keys already fetched.
    pub fn with_initial(fetcher: Arc<dyn Fetcher>, first: Expiring) -> RefreshingCredentials {
        RefreshingCredentials {
            fetcher,
            state: Arc::new(RwLock::new(RefreshState {
                current: first,
                last_fetch: Instant::now(),
            })),
            refreshing: Arc::new(AtomicBool::new(false)),
            fetch_gate: Arc::new(Mutex::new(())),
        }
    }

    /// Expired keys: fetched by one caller at a time; a caller that waited behind another's
    /// fetch takes its keys (fetches stay at least [`MIN_FETCH_INTERVAL`] apart).
    fn fetch_expired(&self) {
        off_the_runtime(|| {
            let _gate = self.fetch_gate.lock();
            if self.state.read().last_fetch.elapsed() < MIN_FETCH_INTERVAL {
                return;
            }
            if let Err(e) = Self::fetch_into(self.fetcher.as_ref(), &self.state) {
                warn!(
                    "credentials from {} expired and cannot be refreshed: {e}",
                    self.fetcher.describe()
                );
                self.state.write().last_fetch = Instant::now();
            }
        })
    }

    /// When the current keys expire, if they do.
    pub fn expires(&self) -> Option<SystemTime> {
        self.state.read().current.expires
    }

    fn fetch_into(fetcher: &dyn Fetcher, state: &RwLock<RefreshState>) -> Result<bool, String> {
        let fresh = off_the_runtime(|| fetcher.fetch())?;
        let mut st = state.write();
        st.last_fetch = Instant::now();
        let changed = st.current.credentials != fresh.credentials;
        st.current = fresh;
        Ok(changed)
    }

    fn refresh_in_background(&self) {
        // A thread of its own (not the runtime's): the fetch blocks.
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (fetcher, state, flag) = (
            self.fetcher.clone(),
            self.state.clone(),
            self.refreshing.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("bucketfs-creds".into())
            .spawn(move || {
                match Self::fetch_into(fetcher.as_ref(), &state) {
                    Ok(_) => debug!(source = %fetcher.describe(), "credentials refreshed"),
                    Err(e) => warn!(
                        "cannot refresh credentials from {}: {e}",
                        fetcher.describe()
                    ),
                }
                state.write().last_fetch = Instant::now();
                flag.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.refreshing.store(false, Ordering::Release);
        }
    }
}

impl CredentialSource for RefreshingCredentials {
    fn current(&self) -> Credentials {
        let now = SystemTime::now();
        let (expires, last_fetch) = {
            let st = self.state.read();
            (st.current.expires, st.last_fetch)
        };
        if let Some(exp) = expires {
            let recently = last_fetch.elapsed() < MIN_FETCH_INTERVAL;
            if now + EXPIRY_MARGIN >= exp && !recently {
                // Expired: the request would fail anyway, so wait for new keys.
                self.fetch_expired();
            } else if now + REFRESH_AHEAD >= exp && !recently {
                self.refresh_in_background();
            }
        }
        self.state.read().current.credentials.clone()
    }

    fn refresh_after_denied(&self) -> bool {
        match Self::fetch_into(self.fetcher.as_ref(), &self.state) {
            Ok(changed) => changed,
            Err(e) => {
                warn!(
                    "cannot refresh credentials from {}: {e}",
                    self.fetcher.describe()
                );
                false
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "access key {} from {}",
            self.state.read().current.credentials.access_key_id,
            self.fetcher.describe()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Rotating files

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
    })
}

/// How often the files are looked at (one `stat` each).
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

type Loader = dyn Fn() -> Result<Credentials, String> + Send + Sync;

struct FileState {
    credentials: Credentials,
    stamps: Vec<Option<FileStamp>>,
    checked: Instant,
}

/// Keys read from files that may be rewritten (rotating credentials): read again when a
/// file changes (checked at most once a second) and once after a 403.
pub struct FileCredentials {
    paths: Vec<PathBuf>,
    loader: Box<Loader>,
    origin: String,
    state: Mutex<FileState>,
}

impl fmt::Debug for FileCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCredentials")
            .field("paths", &self.paths)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl FileCredentials {
    /// `initial`: the keys `loader` gave just now.
    pub fn new(
        paths: Vec<PathBuf>,
        origin: String,
        initial: Credentials,
        loader: Box<Loader>,
    ) -> FileCredentials {
        let stamps = paths.iter().map(|p| stamp(p)).collect();
        FileCredentials {
            paths,
            loader,
            origin,
            state: Mutex::new(FileState {
                credentials: initial,
                stamps,
                checked: Instant::now(),
            }),
        }
    }

    /// Reloads; returns whether the keys changed. Errors keep the old keys.
    fn reload(&self, st: &mut FileState) -> bool {
        st.stamps = self.paths.iter().map(|p| stamp(p)).collect();
        st.checked = Instant::now();
        match (self.loader)() {
            Ok(c) => {
                let changed = c != st.credentials;
                if changed {
                    debug!(origin = %self.origin, access_key = %c.access_key_id, "credentials file changed; keys reloaded");
                }
                st.credentials = c;
                changed
            }
            Err(e) => {
                warn!("cannot reload credentials from {}: {e}", self.origin);
                false
            }
        }
    }
}

impl CredentialSource for FileCredentials {
    fn current(&self) -> Credentials {
        let mut st = self.state.lock();
        if st.checked.elapsed() >= FILE_CHECK_INTERVAL {
            st.checked = Instant::now();
            let now: Vec<Option<FileStamp>> = self.paths.iter().map(|p| stamp(p)).collect();
            if now != st.stamps {
                self.reload(&mut st);
            }
        }
        st.credentials.clone()
    }

    fn refresh_after_denied(&self) -> bool {
        let mut st = self.state.lock();
        self.reload(&mut st)
    }

    fn describe(&self) -> String {
        format!(
            "access key {} from {}",
            self.state.lock().credentials.access_key_id,
            self.origin
        )
    }
}

// ---------------------------------------------------------------------------------------------
// JSON (flat objects of credential documents)

/// The top-level members of a JSON object, as strings (numbers and booleans as written;
/// nested objects and arrays skipped; `null` left out).
pub fn parse_flat_json(text: &str) -> Result<HashMap<String, String>, String> {
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
    Ok(doc
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
}

/// Keys from a credential document (credential_process, IMDS, ECS): `AccessKeyId`,
/// `SecretAccessKey`, `SessionToken` or `Token`, `Expiration`.
pub fn credentials_from_json(text: &str) -> Result<Expiring, String> {
    let doc = parse_flat_json(text)?;
    if let Some(code) = doc.get("Code").filter(|c| *c != "Success") {
        return Err(format!("credential document says {code}"));
    }
    let get = |k: &str| doc.get(k).filter(|v| !v.is_empty()).cloned();
    let access_key_id = get("AccessKeyId").ok_or("no AccessKeyId in credential document")?;
    let secret_access_key =
        get("SecretAccessKey").ok_or("no SecretAccessKey in credential document")?;
    let expires = match get("Expiration") {
        Some(e) => Some(
            super::time::parse_iso8601(&e)
                .ok_or_else(|| format!("cannot read Expiration {e:?}"))?,
        ),
        None => None,
    };
    Ok(Expiring {
        credentials: Credentials {
            access_key_id,
            secret_access_key,
            session_token: get("SessionToken").or_else(|| get("Token")),
        },
        expires,
    })
}

/// ISO 8601 of a time (for tests building credential documents).
#[doc(hidden)]
pub fn iso8601_for_tests(t: SystemTime) -> String {
    super::time::iso8601(t)
}

// ---------------------------------------------------------------------------------------------
// credential_process

/// Runs a profile's `credential_process` (through `sh -c`) and reads its JSON.
pub struct ProcessFetcher {
    pub command: String,
    pub origin: String,
}

/// How long a `credential_process` may run: one that hangs is killed and the fetch fails
/// (keys already held stay in use until they expire).
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

impl ProcessFetcher {
    /// Runs the command; its output, or an error once `timeout` has passed (it is killed).
    fn run(&self, timeout: Duration) -> Result<std::process::Output, String> {
        use std::io::Read as _;
        use std::process::Stdio;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run credential_process: {e}"))?;
        let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out);
            }
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut err);
            }
            let _ = tx.send((out, err));
        });
        match rx.recv_timeout(timeout) {
            Ok((stdout, stderr)) => {
                let status = child
                    .wait()
                    .map_err(|e| format!("credential_process: {e}"))?;
                Ok(std::process::Output {
                    status,
                    stdout,
                    stderr,
                })
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "credential_process did not finish within {} s and was stopped",
                    timeout.as_secs_f32()
                ))
            }
        }
    }

    /// [`Fetcher::fetch`] with a timeout of its own.
    pub fn fetch_within(&self, timeout: Duration) -> Result<Expiring, String> {
        let out = self.run(timeout)?;
        if !out.status.success() {
            // stderr may say why; keep it short, and it is the tool's, not a secret we hold.
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>();
            return Err(format!(
                "credential_process failed ({}): {first}",
                out.status
            ));
        }
        let text = String::from_utf8(out.stdout)
            .map_err(|_| "credential_process printed something that is not UTF-8".to_string())?;
        let doc = parse_flat_json(&text)
            .map_err(|e| format!("credential_process output is not a JSON object: {e}"))?;
        if let Some(v) = doc.get("Version").filter(|v| *v != "1") {
            return Err(format!(
                "credential_process output has Version {v}; only 1 is known"
            ));
        }
        credentials_from_json(&text).map_err(|e| format!("credential_process output: {e}"))
    }
}

impl Fetcher for ProcessFetcher {
    fn fetch(&self) -> Result<Expiring, String> {
        self.fetch_within(PROCESS_TIMEOUT)
    }

    fn describe(&self) -> String {
        self.origin.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP requests to link-local and loopback metadata services (hyper)

/// How long metadata requests may take: a laptop without such a service must not hang.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(1);

/// A parsed `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = url
            .trim()
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// metadata endpoints are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (h, after) = inner.split_once(']').ok_or("bad IPv6 host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port in {url}"))?,
                None => 80,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("bad port in {url}"))?,
                ),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in {url}"));
        }
        Ok(HttpUrl {
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    /// `http://host:port` + this URL's path + `path`, for a request.
    fn uri(&self, path: &str) -> Result<Uri, String> {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("http://{host}:{}{}{path}", self.port, self.path)
            .parse()
            .map_err(|e| format!("bad metadata URL {host}:{}{path}: {e}", self.port))
    }
}

/// Largest metadata response body read.
const MAX_BODY: usize = 1 << 20;

type MetadataClient = Client<HttpConnector, Empty<Bytes>>;

/// A client for one fetch: plain HTTP, connecting within `timeout`; never through a proxy
/// (instance metadata and the ECS endpoint are link-local or on this machine, as the AWS SDKs
/// reach them), unlike STS and the SSO services (`super::sts::ServiceTransport`).
fn metadata_client(timeout: Duration) -> MetadataClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Runs `work` on a current-thread tokio runtime of its own, on a thread of its own, and waits
/// for it. A runtime per fetch (keys are fetched every few hours) rather than one kept by the
/// fetcher: it is callable from any thread, inside another runtime or not, and no runtime is
/// ever dropped inside async code (which tokio forbids) when the last owner of a fetcher is.
pub(crate) fn run_on_own_runtime<T: Send>(
    work: impl Future<Output = Result<T, String>> + Send,
) -> Result<T, String> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("bucketfs-metadata".into())
            .spawn_scoped(scope, || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime for metadata requests: {e}"))?;
                runtime.block_on(work)
            })
            .map_err(|e| format!("cannot start a thread for metadata requests: {e}"))?;
        thread
            .join()
            .unwrap_or_else(|_| Err("metadata request failed (thread panicked)".into()))
    })
}

/// An error and its causes on one line (`client error (Connect): tcp connect error: …`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// One request with an empty body; returns `(status, body)`. Connecting may take `timeout`,
/// the whole exchange three times that. Header values are sent, never logged.
async fn http_request(
    client: &MetadataClient,
    method: Method,
    base: &HttpUrl,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(base.uri(path)?);
    for (name, value) in headers {
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("bad value for header {name}"))?;
        request = request.header(*name, value);
    }
    if method == Method::PUT || method == Method::POST {
        request = request.header(CONTENT_LENGTH, "0");
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| format!("bad metadata request: {e}"))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                format!(
                    "cannot connect to {}:{}: {}",
                    base.host,
                    base.port,
                    error_chain(&e)
                )
            } else {
                format!("metadata request failed: {}", error_chain(&e))
            }
        })?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    "metadata response too large".to_string()
                } else {
                    format!("metadata response failed: {}", error_chain(e.as_ref()))
                }
            })?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout * 3, exchange)
        .await
        .map_err(|_| "metadata response too slow".to_string())?
}

// ---------------------------------------------------------------------------------------------
// EC2 instance metadata (IMDSv2) and the ECS container endpoint

/// Default IMDS endpoint; `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides it.
pub const IMDS_DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// ECS: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is relative to this.
pub const ECS_DEFAULT_HOST: &str = "http://169.254.170.2";

/// The instance role's keys from EC2 instance metadata, IMDSv2 (token first).
pub struct ImdsFetcher {
    pub endpoint: HttpUrl,
    pub timeout: Duration,
    role: Mutex<Option<String>>,
}

impl ImdsFetcher {
    pub fn new(endpoint: HttpUrl, timeout: Duration) -> ImdsFetcher {
        ImdsFetcher {
            endpoint,
            timeout,
            role: Mutex::new(None),
        }
    }
}

impl ImdsFetcher {
    /// IMDSv2: a session token (PUT), the role's name (once), then the role's keys.
    async fn fetch_async(&self) -> Result<Expiring, String> {
        let client = metadata_client(self.timeout);
        let (status, token) = http_request(
            &client,
            Method::PUT,
            &self.endpoint,
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
            self.timeout,
        )
        .await?;
        if status != 200 || token.trim().is_empty() {
            return Err(format!("instance metadata token request answered {status}"));
        }
        let token = token.trim().to_string();
        let auth = [("X-aws-ec2-metadata-token", token.as_str())];
        let base = "/latest/meta-data/iam/security-credentials/";
        let cached = self.role.lock().clone();
        let role = match cached {
            Some(r) => r,
            None => {
                let (status, body) = http_request(
                    &client,
                    Method::GET,
                    &self.endpoint,
                    base,
                    &auth,
                    self.timeout,
                )
                .await?;
                if status != 200 {
                    return Err(format!(
                        "instance metadata has no IAM role (status {status})"
                    ));
                }
                let role = body
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .ok_or("instance metadata has no IAM role")?
                    .to_string();
                *self.role.lock() = Some(role.clone());
                role
            }
        };
        let (status, body) = http_request(
            &client,
            Method::GET,
            &self.endpoint,
            &format!("{base}{role}"),
            &auth,
            self.timeout,
        )
        .await?;
        if status != 200 {
            *self.role.lock() = None;
            return Err(format!("instance metadata credentials answered {status}"));
        }
        credentials_from_json(&body)
    }
}

impl Fetcher for ImdsFetcher {
    fn fetch(&self) -> Result<Expiring, String> {
        run_on_own_runtime(self.fetch_async())
    }

    fn describe(&self) -> String {
        format!(
            "EC2 instance metadata at {}:{}",
            self.endpoint.host, self.endpoint.port
        )
    }
}

/// The task role's keys from the ECS (or EKS pod identity) container endpoint.
pub struct ContainerFetcher {
    pub url: HttpUrl,
    /// `Authorization` header value, or a file holding it (read on every fetch).
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl Fetcher for ContainerFetcher {
    fn fetch(&self) -> Result<Expiring, String> {
        let token = match (&self.token_file, &self.token) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, t) => t.clone(),
        };
        let mut headers = Vec::new();
        if let Some(t) = token.as_deref() {
            headers.push(("Authorization", t));
        }
        let client = metadata_client(self.timeout);
        let (status, body) = run_on_own_runtime(http_request(
            &client,
            Method::GET,
            &self.url,
            "",
            &headers,
            self.timeout,
        ))?;
        if status != 200 {
            return Err(format!("container credentials endpoint answered {status}"));
        }
        credentials_from_json(&body)
    }

    fn describe(&self) -> String {
        format!(
            "container credentials endpoint {}:{}",
            self.url.host, self.url.port
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_process_that_hangs_is_stopped_with_a_clear_error() {
        let hung = ProcessFetcher {
            command: "sleep 30".into(),
            origin: "credential_process of profile p".into(),
        };
        let started = std::time::Instant::now();
        let err = hung
            .fetch_within(Duration::from_millis(300))
            .expect_err("a process that never answers");
        assert!(err.contains("did not finish within"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "it was not waited for"
        );
        let quick = ProcessFetcher {
            command: r#"echo '{"Version":1,"AccessKeyId":"AK","SecretAccessKey":"S"}'"#.into(),
            origin: "credential_process of profile q".into(),
        };
        let got = quick.fetch_within(Duration::from_secs(30)).expect("keys");
        assert_eq!(got.credentials.access_key_id, "AK");
    }

    #[test]
    fn flat_json() {
        let doc = parse_flat_json(
            r#" { "Version": 1, "AccessKeyId" : "AK\u0049D", "SecretAccessKey":"s\"x",
                 "Nested": {"a": [1, {"b": "}"}]}, "Null": null, "Flag": true } "#,
        )
        .unwrap();
        assert_eq!(doc["Version"], "1");
        assert_eq!(doc["AccessKeyId"], "AKID");
        assert_eq!(doc["SecretAccessKey"], "s\"x");
        assert_eq!(doc["Flag"], "true");
        assert!(!doc.contains_key("Null") && !doc.contains_key("Nested"));
        assert!(parse_flat_json("[1]").is_err());
        assert!(parse_flat_json(r#"{"a": "#).is_err());
        assert!(parse_flat_json("{}").unwrap().is_empty());
    }

    #[test]
    fn credential_document() {
        let e = credentials_from_json(
            r#"{"Code":"Success","AccessKeyId":"A","SecretAccessKey":"S","Token":"T",
                "Expiration":"2030-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        assert_eq!(e.credentials.session_token.as_deref(), Some("T"));
        assert!(e.expires.is_some());
        assert!(credentials_from_json(r#"{"AccessKeyId":"A"}"#).is_err());
        assert!(credentials_from_json(r#"{"Code":"Failed","AccessKeyId":"A"}"#).is_err());
    }

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "")
        );
        let u = HttpUrl::parse("http://[::1]/creds/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 80, "/creds/x")
        );
        assert!(HttpUrl::parse("https://x").is_err());
    }

    /// A loopback server answering every request with `reply` (raw bytes), then closing;
    /// returns its URL and the request heads it read.
    fn one_reply_server(reply: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let heads2 = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                heads2.lock().push(head);
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        (url, heads)
    }

    const CHUNKED_DOC: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n\
        1b\r\n{\"AccessKeyId\": \"CHUNKED\", \r\n\
        1b\r\n\"SecretAccessKey\": \"s\", \"X\"\r\n\
        4\r\n: 1}\r\n0\r\n\r\n";

    fn container(url: &str, token: Option<&str>) -> ContainerFetcher {
        ContainerFetcher {
            url: HttpUrl::parse(&format!("{url}/creds")).unwrap(),
            token: token.map(str::to_string),
            token_file: None,
            timeout: METADATA_TIMEOUT,
        }
    }

    #[test]
    fn chunked_responses_are_read() {
        let (url, heads) = one_reply_server(CHUNKED_DOC);
        let keys = container(&url, Some("Bearer t")).fetch().unwrap();
        assert_eq!(keys.credentials.access_key_id, "CHUNKED");
        assert_eq!(keys.credentials.secret_access_key, "s");
        let head = heads.lock()[0].to_ascii_lowercase();
        assert!(head.starts_with("get /creds http/1.1\r\n"), "{head}");
        assert!(head.contains("authorization: bearer t\r\n"), "{head}");
    }

    #[test]
    fn fetches_from_inside_a_runtime() {
        let (url, _) = one_reply_server(CHUNKED_DOC);
        // a current-thread runtime (as in #[tokio::test]) and a worker of a multi-thread one
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let f = container(&url, None);
        let keys = rt.block_on(async { f.fetch() }).unwrap();
        assert_eq!(keys.credentials.access_key_id, "CHUNKED");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let c = Arc::new(RefreshingCredentials::with_initial(
            Arc::new(container(&url, None)),
            Expiring {
                credentials: Credentials {
                    access_key_id: "OLD".into(),
                    secret_access_key: "s".into(),
                    session_token: None,
                },
                expires: None,
            },
        ));
        let c2 = c.clone();
        let changed = rt
            .block_on(rt.spawn(async move { c2.refresh_after_denied() }))
            .unwrap();
        assert!(changed);
        assert_eq!(c.current().access_key_id, "CHUNKED");
    }

    #[test]
    fn request_errors_say_why_in_one_line() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = container(&format!("http://127.0.0.1:{port}"), None)
            .fetch()
            .unwrap_err();
        assert!(
            err.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let (url, _) = one_reply_server(CHUNKED_DOC);
        let err = container(&url, Some("Bearer a\r\nX-Injected: 1"))
            .fetch()
            .unwrap_err();
        assert_eq!(err, "bad value for header Authorization");
        let (url, _) = one_reply_server("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let err = container(&url, None).fetch().unwrap_err();
        assert_eq!(err, "container credentials endpoint answered 404");
    }

    struct Counting {
        n: Mutex<u32>,
        expires_in: Option<Duration>,
        past: bool,
    }

    impl Fetcher for Counting {
        fn fetch(&self) -> Result<Expiring, String> {
            let mut n = self.n.lock();
            *n += 1;
            let expires = self.expires_in.map(|d| {
                if self.past {
                    SystemTime::now() - d
                } else {
                    SystemTime::now() + d
                }
            });
            Ok(Expiring {
                credentials: Credentials {
                    access_key_id: format!("K{n}"),
                    secret_access_key: "s".into(),
                    session_token: None,
                },
                expires,
            })
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    #[test]
    fn expired_keys_are_fetched_again_before_use() {
        let f = Arc::new(Counting {
            n: Mutex::new(0),
            expires_in: Some(Duration::from_secs(60)),
            past: true,
        });
        let c = RefreshingCredentials::new(f.clone()).unwrap();
        assert_eq!(
            c.current().access_key_id,
            "K1",
            "just fetched: not again at once"
        );
        std::thread::sleep(MIN_FETCH_INTERVAL + Duration::from_millis(50));
        assert_eq!(c.current().access_key_id, "K2");
        assert!(c.refresh_after_denied());
        assert_eq!(c.current().access_key_id, "K3");
    }

    /// Hands out expired keys, each fetch taking a while.
    struct Slow {
        n: Mutex<u32>,
    }
    impl Fetcher for Slow {
        fn fetch(&self) -> Result<Expiring, String> {
            std::thread::sleep(Duration::from_millis(200));
            let mut n = self.n.lock();
            *n += 1;
            Ok(Expiring {
                credentials: Credentials {
                    access_key_id: format!("S{n}"),
                    secret_access_key: "s".into(),
                    session_token: None,
                },
                expires: Some(SystemTime::now() - Duration::from_secs(1)),
            })
        }
        fn describe(&self) -> String {
            "slow".into()
        }
    }

    #[test]
    fn requests_finding_keys_expired_at_once_share_one_fetch() {
        let f = Arc::new(Slow { n: Mutex::new(0) });
        let c = Arc::new(RefreshingCredentials::new(f.clone()).unwrap());
        std::thread::sleep(MIN_FETCH_INTERVAL + Duration::from_millis(50));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || c.current().access_key_id)
            })
            .collect();
        let keys: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            *f.n.lock(),
            2,
            "one fetch at start, one for all eight: {keys:?}"
        );
        assert!(keys.iter().all(|k| k == "S2"), "{keys:?}");
    }

    #[test]
    fn keys_expiring_soon_are_refreshed_in_the_background() {
        let f = Arc::new(Counting {
            n: Mutex::new(0),
            expires_in: Some(Duration::from_secs(120)),
            past: false,
        });
        let c = RefreshingCredentials::new(f.clone()).unwrap();
        std::thread::sleep(MIN_FETCH_INTERVAL + Duration::from_millis(50));
        assert_eq!(
            c.current().access_key_id,
            "K1",
            "still valid: used while refreshing"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.current().access_key_id != "K2" {
            assert!(Instant::now() < deadline, "no background refresh");
            std::thread::sleep(Duration::from_millis(10));
        }
        let never = Arc::new(Counting {
            n: Mutex::new(0),
            expires_in: None,
            past: false,
        });
        let c = RefreshingCredentials::new(never.clone()).unwrap();
        std::thread::sleep(MIN_FETCH_INTERVAL + Duration::from_millis(50));
        assert_eq!(c.current().access_key_id, "K1");
        assert_eq!(*never.n.lock(), 1);
    }

    #[test]
    fn rotating_file_is_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "K1").unwrap();
        let p2 = path.clone();
        let loader = move || {
            let key = std::fs::read_to_string(&p2).map_err(|e| e.to_string())?;
            Ok(Credentials {
                access_key_id: key.trim().to_string(),
                secret_access_key: "s".into(),
                session_token: None,
            })
        };
        let initial = loader().unwrap();
        let c = FileCredentials::new(vec![path.clone()], "file".into(), initial, Box::new(loader));
        assert_eq!(c.current().access_key_id, "K1");
        std::fs::write(&path, "K2-longer").unwrap();
        // after a 403: at once
        assert!(c.refresh_after_denied());
        assert_eq!(c.current().access_key_id, "K2-longer");
        assert!(!c.refresh_after_denied());
        // by itself: within the check interval
        std::fs::write(&path, "K3").unwrap();
        std::thread::sleep(FILE_CHECK_INTERVAL + Duration::from_millis(50));
        assert_eq!(c.current().access_key_id, "K3");
        assert!(c.describe().contains("K3"));
    }
}
