//! The filesystem core without a mount, for the core tests: an S3 client for the in-process
//! test server and a `Filesystem` on it.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::FsConfig;
use bucketfs::fs::{Caller, Filesystem};
use bucketfs::s3::{Credentials, S3Client, S3Config, StaticCredentials};
use bucketfs_test_server::TestServer;

/// A client for `srv` that gives up after 3 attempts within 5 s.
pub fn client(srv: &TestServer) -> S3Client {
    client_with(srv, |_| {})
}

/// As [`client`], with `edit` applied to its configuration first (a test profile, timeouts).
pub fn client_with(srv: &TestServer, edit: impl FnOnce(&mut S3Config)) -> S3Client {
    let mut cfg = config(srv);
    edit(&mut cfg);
    S3Client::new(cfg).expect("client")
}

/// The configuration [`client`] uses: `srv`'s keys, 3 attempts within 5 s.
pub fn config(srv: &TestServer) -> S3Config {
    let creds = Arc::new(StaticCredentials {
        credentials: Credentials {
            access_key_id: srv.access_key(),
            secret_access_key: srv.secret_key(),
            session_token: None,
        },
        origin: "test".into(),
    });
    let mut cfg = S3Config::new(srv.endpoint(), "us-east-1", srv.bucket(), creds);
    cfg.retry_timeout = Duration::from_secs(5);
    cfg.max_attempts = 3;
    cfg
}

/// A filesystem core on `srv` with `cfg` (given a state directory of its own, see
/// [`isolated`]).
pub fn fs_with(srv: &TestServer, cfg: FsConfig) -> Arc<Filesystem> {
    Filesystem::new(isolated(cfg), client(srv))
}

/// `cfg` with a fresh state directory when it has neither a cache dir nor a state dir: the
/// upload journal of a core test goes there, never to the user's `~/.local/state` (where a
/// journal an earlier run left for the same port made a later test wait for its recovery).
/// Removed when the test process exits.
pub fn isolated(mut cfg: FsConfig) -> FsConfig {
    if cfg.cache_dir.is_none() && cfg.state_dir.is_none() {
        cfg.state_dir = Some(fresh_state_dir());
    }
    cfg
}

static STATE_BASE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

extern "C" fn remove_state_base() {
    if let Some(base) = STATE_BASE.get() {
        let _ = std::fs::remove_dir_all(base);
    }
}

fn fresh_state_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let base = STATE_BASE.get_or_init(|| {
        let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("core-state")
            .join(std::process::id().to_string());
        // one an earlier process of the same id left
        let _ = std::fs::remove_dir_all(&base);
        // SAFETY: registers a plain function that only removes a directory.
        unsafe { libc::atexit(remove_state_base) };
        base
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = base.join(n.to_string());
    std::fs::create_dir_all(&dir).expect("state dir");
    dir
}

/// The caller of every operation in the core tests.
pub const ME: Caller = Caller {
    uid: 1000,
    gid: 1000,
    pid: 1,
};

/// Create `name` in `parent` (mode 0640), write `data` in 128 KiB writes, close: its inode.
pub async fn write_file(fs: &Filesystem, parent: u64, name: &str, data: &[u8]) -> u64 {
    let (attr, opened) = fs
        .create(parent, name, 0o640, libc::O_WRONLY, ME)
        .await
        .expect("create");
    for (i, chunk) in data.chunks(128 * 1024).enumerate() {
        fs.write(opened.fh, (i * 128 * 1024) as u64, chunk)
            .await
            .expect("write");
    }
    fs.flush(opened.fh, 0).await.expect("flush");
    fs.release(opened.fh).await.expect("release");
    attr.ino
}

/// The whole file `ino`, read through a fresh read-only open, 1 MiB at a time.
pub async fn read_all(fs: &Filesystem, ino: u64) -> Vec<u8> {
    let o = fs.open(ino, libc::O_RDONLY, ME).await.expect("open");
    let mut out = Vec::new();
    loop {
        let chunk = fs
            .read(o.fh, out.len() as u64, 1024 * 1024)
            .await
            .expect("read");
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(o.fh).await.expect("release");
    out
}

/// Every entry of open directory handle `fh` from `offset` to its end, page by page as a
/// reader goes (`.` and `..` too when `offset` is 0).
pub async fn read_rest(
    fs: &Filesystem,
    ino: u64,
    fh: u64,
    mut offset: u64,
) -> Vec<bucketfs::fs::DirEntryOut> {
    let mut entries = Vec::new();
    loop {
        let page = fs.readdir(ino, fh, offset).await.expect("readdir");
        let Some(last) = page.last() else { break };
        offset = last.next_offset;
        entries.extend(page);
    }
    entries
}

/// The names `readdir` gives for directory `ino` from its start (`.` and `..` first), as one
/// reply holds them.
pub async fn dir_names(fs: &Filesystem, ino: u64) -> Vec<String> {
    let fh = fs.opendir(ino).await.expect("opendir");
    let names = fs
        .readdir(ino, fh, 0)
        .await
        .expect("readdir")
        .into_iter()
        .map(|e| e.name)
        .collect();
    fs.releasedir(fh);
    names
}

/// A core whose journal (and staging) lives in `dir`, kept across "crashes".
pub fn journaled(srv: &TestServer, dir: &std::path::Path) -> Arc<Filesystem> {
    fs_with(
        srv,
        FsConfig {
            cache_dir: Some(dir.to_path_buf()),
            ..FsConfig::default()
        },
    )
}
