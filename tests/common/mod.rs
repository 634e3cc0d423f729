//! Shared test harness: an in-process S3 server (SigV4-checking) and real FUSE mounts of the
//! bucketfs binary on it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use bucketfs_test_server::TestServer;
use sha2::{Digest, Sha256};

/// Tests that mount need /dev/fuse and root; skip (loudly) where that is missing.
pub fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists() && unsafe { libc::geteuid() } == 0;
    if !ok {
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
}

/// Start the server every test uses.
pub fn server() -> TestServer {
    TestServer::start_blocking()
}

pub fn bucketfs_cmd(srv: &TestServer) -> Command {
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
    pub fn new(srv: &TestServer, extra: &[&str]) -> Mount {
        Self::with_bucket(srv, srv.bucket(), extra)
    }

    pub fn with_bucket(srv: &TestServer, bucket: &str, extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().with_extension("log");
        let mnt = dir.path().to_path_buf();
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
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logfile);
        let child = cmd.spawn().expect("spawn bucketfs");
        let mut m = Mount {
            dir,
            child: Some(child),
            log,
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

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_live(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
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
        panic!("mount did not come up: {}", self.log_text());
    }

    /// Unmount cleanly and wait for the daemon to exit; returns its exit status success.
    pub fn unmount(&mut self) -> bool {
        if is_mounted(self.path()) {
            let _ = Command::new("umount").arg(self.path()).status();
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
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = canon.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()) && l.contains("fuse"))
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
