//! Shared test harness: an in-process S3 server (SigV4-checking) and real FUSE mounts of the
//! bucketfs binary on it.
//!
//! With `BUCKETFS_TEST_ENDPOINT=http://HOST:PORT` set, [`server`] stands for that external S3
//! server instead (bucket `BUCKETFS_TEST_BUCKET`, default `bucketfs-compat`, which must exist
//! and is emptied at the start of each test; keys `BUCKETFS_TEST_ACCESS_KEY` /
//! `BUCKETFS_TEST_SECRET_KEY`, default `testing`). Objects are then put and read through the
//! bucketfs S3 client. Anything only the in-process server has (counters, faults, the request
//! log, stop/restart) panics with [`SKIP_EXTERNAL`], which `scripts/compat.sh` reports as a
//! skip; run such a suite with `--test-threads=1` (one bucket).

#![allow(dead_code)]

pub mod process;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bucketfs_test_server::store::Metadata;
pub use bucketfs_test_server::{ObjectAttrs, ObjectMeta, TestServer};
use sha2::{Digest, Sha256};

/// Panic message of test-server-only features used against an external server.
pub const SKIP_EXTERNAL: &str = "SKIP-EXTERNAL: needs the in-process test server";

/// Tests that mount need /dev/fuse and root; skip (loudly) where that is missing, except in
/// CI (`CI` set), where a mount test that cannot run fails.
pub fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists() && unsafe { libc::geteuid() } == 0;
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the mount tests: /dev/fuse and root are needed"
        );
        eprintln!("SKIPPED: needs /dev/fuse and root");
    }
    ok
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A mounted bucketfs process. Unmounts (and waits for the process) on drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// The mount's own staging area (unless the test names one), removed with it.
    cache: Option<tempfile::TempDir>,
}

/// Start the server every test uses (or connect to `BUCKETFS_TEST_ENDPOINT`).
pub fn server() -> Server {
    match std::env::var("BUCKETFS_TEST_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            Server::External(Box::new(External::connect(endpoint.trim())))
        }
        _ => Server::Local(TestServer::start_blocking()),
    }
}

/// The in-process test server, or an external S3 server (see the module docs).
pub enum Server {
    Local(TestServer),
    External(Box<External>),
}

/// Anything not redefined here is the in-process server's; external servers skip.
impl Deref for Server {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        match self {
            Server::Local(s) => s,
            Server::External(_) => panic!("{SKIP_EXTERNAL}"),
        }
    }
}

impl Server {
    pub fn is_external(&self) -> bool {
        matches!(self, Server::External(_))
    }

    /// The in-process server, whose request counters a test may check; `None` for an
    /// external server (the test then checks everything but the counts).
    pub fn counting(&self) -> Option<&TestServer> {
        match self {
            Server::Local(s) => Some(s),
            Server::External(_) => None,
        }
    }

    pub fn endpoint(&self) -> String {
        match self {
            Server::Local(s) => s.endpoint(),
            Server::External(e) => e.endpoint.clone(),
        }
    }

    pub fn bucket(&self) -> &str {
        match self {
            Server::Local(s) => s.bucket(),
            Server::External(e) => &e.bucket,
        }
    }

    pub fn access_key(&self) -> String {
        match self {
            Server::Local(s) => s.access_key(),
            Server::External(e) => e.access_key.clone(),
        }
    }

    pub fn secret_key(&self) -> String {
        match self {
            Server::Local(s) => s.secret_key(),
            Server::External(e) => e.secret_key.clone(),
        }
    }

    pub fn put_object(&self, key: &str, data: impl Into<bytes::Bytes>) -> ObjectMeta {
        self.put_object_with_meta(key, data, Metadata::new(), None)
    }

    pub fn put_object_with_meta(
        &self,
        key: &str,
        data: impl Into<bytes::Bytes>,
        metadata: Metadata,
        content_type: Option<&str>,
    ) -> ObjectMeta {
        match self {
            Server::Local(s) => s.put_object_with_meta(key, data, metadata, content_type),
            Server::External(e) => e.put(key, data.into(), metadata, content_type),
        }
    }

    pub fn get_object(&self, key: &str) -> Option<bytes::Bytes> {
        match self {
            Server::Local(s) => s.get_object(key),
            Server::External(e) => e.get(key),
        }
    }

    pub fn object_meta(&self, key: &str) -> Option<ObjectMeta> {
        match self {
            Server::Local(s) => s.object_meta(key),
            Server::External(e) => e.head(key),
        }
    }

    pub fn keys(&self) -> Vec<String> {
        match self {
            Server::Local(s) => s.keys(),
            Server::External(e) => e.keys(),
        }
    }

    pub fn delete_object(&self, key: &str) -> bool {
        match self {
            Server::Local(s) => s.delete_object(key),
            Server::External(e) => e.delete(key),
        }
    }

    pub fn multipart_uploads(&self) -> Vec<(String, String)> {
        match self {
            Server::Local(s) => s.multipart_uploads(),
            Server::External(e) => e.uploads(),
        }
    }
}

/// An external S3 server, driven through the bucketfs client.
pub struct External {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    client: bucketfs::s3::S3Client,
    rt: tokio::runtime::Runtime,
}

impl External {
    fn connect(endpoint: &str) -> External {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let bucket = var("BUCKETFS_TEST_BUCKET", "bucketfs-compat");
        let access_key = var("BUCKETFS_TEST_ACCESS_KEY", "testing");
        let secret_key = var("BUCKETFS_TEST_SECRET_KEY", "testing");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let creds = Arc::new(bucketfs::s3::StaticCredentials {
            credentials: bucketfs::s3::Credentials {
                access_key_id: access_key.clone(),
                secret_access_key: secret_key.clone(),
                session_token: None,
            },
            origin: "BUCKETFS_TEST_ACCESS_KEY".into(),
        });
        let cfg = bucketfs::s3::S3Config::new(endpoint, "us-east-1", &bucket, creds);
        let client = rt
            .block_on(async { bucketfs::s3::S3Client::new(cfg) })
            .expect("client for BUCKETFS_TEST_ENDPOINT");
        let ext = External {
            endpoint: endpoint.to_string(),
            bucket,
            access_key,
            secret_key,
            client,
            rt,
        };
        ext.empty_bucket();
        ext
    }

    fn empty_bucket(&self) {
        for (key, id) in self.uploads() {
            let _ = self
                .rt
                .block_on(self.client.abort_multipart_upload(&key, &id));
        }
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        // DeleteObjects first; one by one for what it leaves (servers differ on odd keys in XML)
        let left: Vec<String> = match self.rt.block_on(self.client.delete_objects(&keys)) {
            Ok(failed) => failed.into_iter().map(|(k, _)| k).collect(),
            Err(_) => keys,
        };
        for key in left {
            self.rt
                .block_on(self.client.delete_object(&key))
                .unwrap_or_else(|e| panic!("cannot empty the external bucket ({key:?}): {e}"));
        }
    }

    fn put(
        &self,
        key: &str,
        data: bytes::Bytes,
        metadata: Metadata,
        content_type: Option<&str>,
    ) -> ObjectMeta {
        let opts = bucketfs::s3::PutOptions {
            content_type: content_type.map(str::to_string),
            user_metadata: metadata,
            ..Default::default()
        };
        self.rt
            .block_on(self.client.put_object(key, data, &opts))
            .expect("put_object on the external server");
        self.head(key).expect("object just put")
    }

    fn get(&self, key: &str) -> Option<bytes::Bytes> {
        match self.rt.block_on(self.client.get_object(key, None, None)) {
            Ok(o) => Some(o.body),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("GET {key}: {e}"),
        }
    }

    fn head(&self, key: &str) -> Option<ObjectMeta> {
        let m = match self.rt.block_on(self.client.head_object(key)) {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return None,
            Err(e) => panic!("HEAD {key}: {e}"),
        };
        Some(ObjectMeta {
            key: key.to_string(),
            size: m.size,
            etag: m.etag.unwrap_or_default(),
            last_modified: m.last_modified.unwrap_or(std::time::UNIX_EPOCH),
            content_type: m.content_type.clone(),
            metadata: m.user_metadata.clone(),
            attrs: ObjectAttrs {
                content_type: m.content_type,
                metadata: m.user_metadata,
                ..ObjectAttrs::default()
            },
            parts_count: None,
        })
    }

    fn keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .rt
                .block_on(self.client.list_objects_v2(&bucketfs::s3::ListRequest {
                    continuation_token: token.clone(),
                    ..Default::default()
                }))
                .expect("list the external bucket");
            out.extend(page.objects.into_iter().map(|o| o.key));
            token = page.next_continuation_token;
            if token.is_none() {
                break;
            }
        }
        out.sort();
        out
    }

    fn delete(&self, key: &str) -> bool {
        let existed = self.head(key).is_some();
        self.rt
            .block_on(self.client.delete_object(key))
            .expect("delete on the external server");
        existed
    }

    fn uploads(&self) -> Vec<(String, String)> {
        self.rt
            .block_on(self.client.list_multipart_uploads(""))
            .expect("list uploads on the external server")
            .into_iter()
            .map(|u| (u.key, u.upload_id))
            .collect()
    }
}

/// The in-process server needs no probe (its request counts stay the tests' own), unless a
/// test asks for one; external servers are probed as a user's mount would probe them.
fn probe_off(srv: &Server, extra: &[&str]) -> Vec<&'static str> {
    let asked = extra
        .iter()
        .any(|a| a.starts_with("--probe") || a.contains("probe="));
    if srv.is_external() || asked {
        vec![]
    } else {
        vec!["--probe", "off"]
    }
}

pub fn bucketfs_cmd(srv: &Server) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucketfs"));
    cmd.env("AWS_ACCESS_KEY_ID", srv.access_key())
        .env("AWS_SECRET_ACCESS_KEY", srv.secret_key())
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("RUST_LOG", "bucketfs=debug");
    cmd
}

impl Mount {
    /// Mount the server's bucket with `extra` arguments, in the foreground, and wait until live.
    pub fn new(srv: &Server, extra: &[&str]) -> Mount {
        Self::with_bucket(srv, srv.bucket(), extra)
    }

    pub fn with_bucket(srv: &Server, bucket: &str, extra: &[&str]) -> Mount {
        Self::start_at(
            srv,
            bucket,
            tempfile::tempdir().expect("tempdir"),
            None,
            extra,
        )
    }

    /// As [`Mount::new`], the daemon's command changed by `edit` first (its environment:
    /// credentials from a profile instead of the server's keys).
    pub fn with_command(srv: &Server, extra: &[&str], edit: &dyn Fn(&mut Command)) -> Mount {
        Self::start_with(
            srv,
            srv.bucket(),
            tempfile::tempdir().expect("tempdir"),
            None,
            extra,
            edit,
        )
    }

    /// `umount` (which returns once the kernel lets go, the daemon may still be finishing),
    /// then at once a new mount of the same place: the returned mount, and the old daemon.
    pub fn umount_and_mount_again(mut self, srv: &Server, extra: &[&str]) -> (Mount, Child) {
        let status = Command::new("umount")
            .arg(self.path())
            .status()
            .expect("umount");
        assert!(status.success(), "umount failed");
        let old = self.child.take().expect("daemon");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        // the same staging area (and state directory), as a user's remount would have
        let cache = self.cache.take();
        (Self::start_at(srv, srv.bucket(), dir, cache, extra), old)
    }

    fn start_at(
        srv: &Server,
        bucket: &str,
        dir: tempfile::TempDir,
        cache: Option<tempfile::TempDir>,
        extra: &[&str],
    ) -> Mount {
        Self::start_with(srv, bucket, dir, cache, extra, &|_| {})
    }

    fn start_with(
        srv: &Server,
        bucket: &str,
        dir: tempfile::TempDir,
        cache: Option<tempfile::TempDir>,
        extra: &[&str],
        edit: &dyn Fn(&mut Command),
    ) -> Mount {
        let log = dir.path().with_extension("log");
        let mnt = dir.path().to_path_buf();
        // a staging area of its own, so that test runs leave nothing in ~/.cache or /var/cache
        let names_cache = extra
            .iter()
            .any(|a| a.starts_with("--cache-dir") || a.contains("cache_dir="));
        let cache =
            cache.or_else(|| (!names_cache).then(|| tempfile::tempdir().expect("cache dir")));
        let cache_args: Vec<String> = cache
            .iter()
            .flat_map(|c| ["--cache-dir".to_string(), c.path().display().to_string()])
            .collect();
        let logfile = std::fs::File::create(&log).expect("log file");
        let endpoint = srv.endpoint();
        let mut cmd = bucketfs_cmd(srv);
        cmd.arg("mount")
            .arg(bucket)
            .arg(&mnt)
            .args([
                "--endpoint",
                &endpoint,
                "--region",
                "us-east-1",
                "--path-style",
            ])
            .arg("--foreground")
            .args(probe_off(srv, extra))
            .args(&cache_args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logfile);
        edit(&mut cmd);
        let child = cmd.spawn().expect("spawn bucketfs");
        let mut m = Mount {
            dir,
            child: Some(child),
            log,
            cache,
        };
        m.wait_live();
        m
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The daemon's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.child.as_ref().map(|c| c.id()).expect("daemon running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("VmHWM")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_live(&mut self) {
        // generous: under a loaded CI box a mount once took over 20 s to appear (its log
        // stopped at the staging clean-up), and once logged nothing at all for 60 s while
        // other tests flushed GiBs to the same disk
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if is_mounted(self.path()) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("bucketfs exited early ({status}): {}", self.log_text());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // where the daemon is stuck, for the next time a loaded box does this
        let state = self.child.as_ref().map_or_else(String::new, |c| {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.id()));
            let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", c.id()));
            format!("stat {stat:?}, wchan {wchan:?}")
        });
        panic!("mount did not come up ({state}): {}", self.log_text());
    }

    /// Unmount cleanly and wait for the daemon to exit; returns its exit status success.
    pub fn unmount(&mut self) -> bool {
        // "target is busy" can be another test's mount(8) looking at every mount for a moment:
        // try again for a while before waiting on the daemon
        let busy_until = Instant::now() + Duration::from_secs(10);
        while is_mounted(self.path()) {
            let ok = Command::new("umount")
                .arg(self.path())
                .status()
                .is_ok_and(|s| s.success());
            if ok || Instant::now() > busy_until {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9 the daemon, then clear the dead mount.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if is_mounted(self.path()) {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_some() && !self.unmount() {
            eprintln!("bucketfs log:\n{}", self.log_text());
        }
        if is_mounted(self.path()) {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

pub fn is_mounted(path: &Path) -> bool {
    // (the parent resolved, not the mount point: a mount whose daemon is gone answers every
    // call on it, canonicalize included, with ENOTCONN, and must still be found to be unmounted)
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let Ok(canon) = parent.canonicalize().map(|p| p.join(name)) else {
        return false;
    };
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = canon.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()) && l.contains("fuse"))
}

/// close(2) `f` and fail the test if close reports an error: dropping a `File` ignores it,
/// and close is where a file on the mount is uploaded.
pub fn close_checked(f: std::fs::File) {
    use std::os::fd::IntoRawFd;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken out of a File, so it is open and owned here.
    let rc = unsafe { libc::close(fd) };
    assert_eq!(rc, 0, "close failed: {}", std::io::Error::last_os_error());
}

/// `std::fs::write` whose close is checked (see [`close_checked`]).
pub fn write_checked(path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data.as_ref())?;
    close_checked(f);
    Ok(())
}

/// Run a shell command, panicking with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("bash");
    if !out.status.success() {
        panic!(
            "command failed: {cmd}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
