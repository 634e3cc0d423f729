//! Credential sources that change over time: keys that expire and are fetched again
//! (`credential_process`, EC2 instance metadata, the ECS container endpoint) and key files
//! that are rewritten in place (rotating credentials). All are [`CredentialSource`]s.
//!
//! Fetching is blocking (a child process or a loopback/link-local HTTP request with a short
//! timeout): [`RefreshingCredentials`] refreshes in a background thread ahead of expiry, so a
//! request only waits when the keys it holds have already expired.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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

/// Something that can produce fresh keys (blocking).
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

struct RefreshState {
    current: Expiring,
    last_fetch: Instant,
}

/// Keys from a [`Fetcher`], refreshed before they expire and once after a 403.
pub struct RefreshingCredentials {
    fetcher: Arc<dyn Fetcher>,
    state: Arc<RwLock<RefreshState>>,
    refreshing: Arc<AtomicBool>,
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
        }
    }

    /// When the current keys expire, if they do.
    pub fn expires(&self) -> Option<SystemTime> {
        self.state.read().current.expires
    }

    fn fetch_into(fetcher: &dyn Fetcher, state: &RwLock<RefreshState>) -> Result<bool, String> {
        let fresh = fetcher.fetch()?;
        let mut st = state.write();
        st.last_fetch = Instant::now();
        let changed = st.current.credentials != fresh.credentials;
        st.current = fresh;
        Ok(changed)
    }

    fn refresh_in_background(&self) {
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
                if let Err(e) = Self::fetch_into(self.fetcher.as_ref(), &self.state) {
                    warn!(
                        "credentials from {} expired and cannot be refreshed: {e}",
                        self.fetcher.describe()
                    );
                    self.state.write().last_fetch = Instant::now();
                }
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

impl Fetcher for ProcessFetcher {
    fn fetch(&self) -> Result<Expiring, String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run credential_process: {e}"))?;
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

    fn describe(&self) -> String {
        self.origin.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 client for link-local and loopback metadata services

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

    fn addrs(&self) -> Result<Vec<SocketAddr>, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))
    }
}

/// One request; returns `(status, body)`.
pub fn http_request(
    method: &str,
    base: &HttpUrl,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, String), String> {
    let addrs = base.addrs()?;
    let mut last = String::from("no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let host = if base.host.contains(':') {
        format!("[{}]:{}", base.host, base.port)
    } else {
        format!("{}:{}", base.host, base.port)
    };
    let mut req = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n",
        base.path
    );
    for (k, v) in headers {
        if v.contains(['\r', '\n']) {
            return Err(format!("bad value for header {k}"));
        }
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "PUT" || method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("metadata request failed: {e}"))?;
    let mut raw = Vec::new();
    let deadline = Instant::now() + timeout * 3;
    let mut buf = [0u8; 8192];
    loop {
        if Instant::now() > deadline {
            return Err("metadata response too slow".into());
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > 1 << 20 {
                    return Err("metadata response too large".into());
                }
                if let Some(done) = complete_response(&raw) {
                    raw.truncate(done);
                    break;
                }
            }
            Err(e) => return Err(format!("metadata response failed: {e}")),
        }
    }
    parse_response(&raw)
}

/// Length of a complete response with Content-Length, once all of it is in.
fn complete_response(raw: &[u8]) -> Option<usize> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let len: usize = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })?;
    (raw.len() >= end + len).then_some(end + len)
}

fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("metadata response without headers")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad metadata status line")?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")
        })
    });
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        body = dechunk(&body).ok_or("bad chunked metadata response")?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
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

impl Fetcher for ImdsFetcher {
    fn fetch(&self) -> Result<Expiring, String> {
        let (status, token) = http_request(
            "PUT",
            &self.endpoint,
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
            self.timeout,
        )?;
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
                let (status, body) =
                    http_request("GET", &self.endpoint, base, &auth, self.timeout)?;
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
            "GET",
            &self.endpoint,
            &format!("{base}{role}"),
            &auth,
            self.timeout,
        )?;
        if status != 200 {
            *self.role.lock() = None;
            return Err(format!("instance metadata credentials answered {status}"));
        }
        credentials_from_json(&body)
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
        let (status, body) = http_request("GET", &self.url, "", &headers, self.timeout)?;
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

    #[test]
    fn responses() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(complete_response(raw), Some(raw.len()));
        assert_eq!(parse_response(raw).unwrap(), (200, "hello".into()));
        let chunked = b"HTTP/1.1 404 NF\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, "abcde".into()));
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
