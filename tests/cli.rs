//! The bucketfs binary's command line and start-up failures, each of which must be one clear line.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bucketfs_test_server::{ObjectAttrs, TestServer};

mod common;
use common::process::{one_line_failure, run, stderr_of};

const BIN: &str = env!("CARGO_BIN_EXE_bucketfs");
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// A bucketfs command with a clean environment: no AWS settings, HOME in `home`.
fn bucketfs(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.env("HOME", home).stdin(Stdio::null());
    cmd
}

/// True (and a note printed) when this machine cannot open /dev/fuse: the later checks
/// cannot be reached then.
fn fuse_unavailable(line: &str) -> bool {
    if line.contains("FUSE not available") {
        eprintln!("skipped: {line}");
        return true;
    }
    false
}

#[test]
fn help_shows_the_option_groups() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        bucketfs(home.path()).args(["mount", "--help"]),
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for group in [
        "Mount:",
        "Connection:",
        "Credentials:",
        "Caching:",
        "Permissions:",
        "Logging:",
    ] {
        assert!(help.contains(group), "{group} missing from:\n{help}");
    }
    for flag in [
        "--endpoint",
        "--path-style",
        "--passwd-file",
        "--part-size",
        "--allow-other",
    ] {
        assert!(help.contains(flag), "{flag} missing");
    }
    assert!(help.contains("[default: 60]") && help.contains("[default: 8MiB]"));

    let out = run(bucketfs(home.path()).arg("--help"), Duration::from_secs(10));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["mount", "cleanup", "stats", "-o opt1"] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}

#[test]
fn version() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        bucketfs(home.path()).arg("--version"),
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("bucketfs {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn missing_mountpoint_is_one_line() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("no-such-dir");
    let out = run(
        bucketfs(home.path()).args(["mount", "b"]).arg(&missing),
        Duration::from_secs(10),
    );
    let line = one_line_failure(&out);
    assert!(line.contains("does not exist"), "{line}");
    assert!(line.contains("mkdir"), "{line}");
}

#[test]
fn mountpoint_that_is_a_file_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let out = run(
        bucketfs(home.path()).args(["mount", "-f", "b"]).arg(&file),
        Duration::from_secs(10),
    );
    let line = one_line_failure(&out);
    assert!(line.contains("not a directory"), "{line}");
}

#[test]
fn an_unwritable_cache_dir_refuses_the_mount_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // a file where the directory should be: nothing can be created under it
    let blocker = home.path().join("blocker");
    std::fs::write(&blocker, "x").unwrap();
    let out = run(
        bucketfs(home.path())
            .args(["mount", "-f", "b"])
            .arg(&mnt)
            .arg("--cache-dir")
            .arg(blocker.join("cache")),
        Duration::from_secs(10),
    );
    let line = one_line_failure(&out);
    if fuse_unavailable(&line) {
        return;
    }
    assert!(line.contains("cache dir"), "{line}");
    assert!(line.contains("not writable"), "{line}");
    assert!(line.contains("--cache-dir none"), "{line}");
}

#[test]
fn non_empty_mountpoint_is_one_line() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(mnt.join("something"), "x").unwrap();
    let out = run(
        bucketfs(home.path()).args(["mount", "b"]).arg(&mnt),
        Duration::from_secs(10),
    );
    let line = one_line_failure(&out);
    assert!(line.contains("not empty"), "{line}");
    assert!(line.contains("nonempty"), "{line}");
}

#[test]
fn mount8_helper_name_means_mount() {
    let home = tempfile::tempdir().unwrap();
    let helper = home.path().join("mount.fuse.bucketfs");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let missing = home.path().join("nowhere");
    let out = run(
        Command::new(&helper)
            .env_clear()
            .env("HOME", home.path())
            .arg("s3://b/p")
            .arg(&missing)
            .args(["-o", "rw,_netdev,nofail,allow_other"]),
        Duration::from_secs(10),
    );
    let line = one_line_failure(&out);
    assert!(line.contains("does not exist"), "{line}");
}

#[test]
fn unknown_dash_o_option_is_refused_with_the_list() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = run(
        bucketfs(home.path())
            .arg("b")
            .arg(&mnt)
            .args(["-o", "ro,frobnicate=3"]),
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("unknown mount option 'frobnicate'"), "{err}");
    for valid in ["endpoint=", "allow_other", "passwd_file=", "_netdev"] {
        assert!(err.contains(valid), "{valid} not listed: {err}");
    }
}

#[test]
fn group_readable_passwd_file_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let passwd = home.path().join("passwd");
    std::fs::write(&passwd, format!("AKIDTEST:{SECRET}\n")).unwrap();
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(
        bucketfs(home.path())
            .args(["mount", "--foreground", "b"])
            .arg(&mnt)
            .arg("--passwd-file")
            .arg(&passwd)
            .args(["--endpoint", "http://127.0.0.1:1"]),
        Duration::from_secs(20),
    );
    let line = one_line_failure(&out);
    if fuse_unavailable(&line) {
        return;
    }
    assert!(line.contains("readable by group or others"), "{line}");
    assert!(line.contains("chmod 600"), "{line}");
    assert!(!line.contains(SECRET));
}

#[test]
fn unreachable_endpoint_is_reported_by_the_daemon() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let started = Instant::now();
    let out = run(
        bucketfs(home.path())
            .args(["mount", "b"])
            .arg(&mnt)
            .args(["--endpoint", "http://127.0.0.1:1", "--retry-timeout", "2"])
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", SECRET),
        Duration::from_secs(30),
    );
    let line = one_line_failure(&out);
    if fuse_unavailable(&line) {
        return;
    }
    assert!(line.contains("cannot reach http://127.0.0.1:1"), "{line}");
    assert!(!line.contains(SECRET));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn stats_of_a_directory_that_is_no_mount() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        bucketfs(home.path()).arg("stats").arg(home.path()),
        Duration::from_secs(10),
    );
    let line = one_line_failure(&out);
    assert!(line.contains(".bucketfs/stats"), "{line}");
}

/// `bucketfs mount BUCKET MNT` against the test server, keys from the environment.
fn mount_against(
    srv: &TestServer,
    home: &Path,
    bucket: &str,
    access_key: &str,
    secret: &str,
) -> Output {
    let mnt = home.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(
        bucketfs(home)
            .args(["mount", bucket])
            .arg(&mnt)
            .args(["--endpoint", &srv.endpoint(), "--retry-timeout", "5"])
            .env("AWS_ACCESS_KEY_ID", access_key)
            .env("AWS_SECRET_ACCESS_KEY", secret),
        Duration::from_secs(30),
    )
}

#[test]
fn wrong_secret_is_access_denied_naming_the_key_only() {
    let srv = TestServer::start_blocking();
    let home = tempfile::tempdir().unwrap();
    let wrong = "not-the-secret-0123456789";
    let out = mount_against(&srv, home.path(), srv.bucket(), &srv.access_key(), wrong);
    let line = one_line_failure(&out);
    if fuse_unavailable(&line) {
        return;
    }
    let want = format!(
        "access denied by {} at {} for access key {} from environment: check the keys",
        srv.bucket(),
        srv.endpoint(),
        srv.access_key()
    );
    assert!(line.contains(&want), "{line}");
    assert!(!line.contains(wrong) && !line.contains(&srv.secret_key()));
}

#[test]
fn missing_bucket_is_no_such_bucket() {
    let srv = TestServer::start_blocking();
    let home = tempfile::tempdir().unwrap();
    let out = mount_against(
        &srv,
        home.path(),
        "nope",
        &srv.access_key(),
        &srv.secret_key(),
    );
    let line = one_line_failure(&out);
    if fuse_unavailable(&line) {
        return;
    }
    assert!(line.contains("no such bucket nope"), "{line}");
}

#[test]
fn cleanup_aborts_old_uploads_under_the_prefix() {
    let srv = TestServer::start_blocking();
    let bucket = srv.bucket().to_string();
    for key in ["a/one", "a/two", "b/three"] {
        srv.with_store(|s| s.create_multipart_upload(&bucket, key, ObjectAttrs::default(), false))
            .unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let cleanup = |extra: &[&str]| {
        run(
            bucketfs(home.path())
                .arg("cleanup")
                .arg(format!("s3://{bucket}/a"))
                .args(["--endpoint", &srv.endpoint(), "--retry-timeout", "5"])
                .args(extra)
                .env("AWS_ACCESS_KEY_ID", srv.access_key())
                .env("AWS_SECRET_ACCESS_KEY", srv.secret_key()),
            Duration::from_secs(30),
        )
    };

    let young = cleanup(&["--older-than", "1h"]);
    assert!(young.status.success(), "{}", stderr_of(&young));
    assert!(young.stdout.is_empty());

    let dry = cleanup(&["--older-than", "0", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr_of(&dry));
    let text = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().all(|l| l.starts_with("would abort a/")),
        "{text}"
    );
    assert_eq!(srv.multipart_uploads().len(), 3);

    let real = cleanup(&["--older-than", "0s"]);
    assert!(real.status.success(), "{}", stderr_of(&real));
    let text = String::from_utf8_lossy(&real.stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.starts_with("aborted a/")), "{text}");
    let left: Vec<String> = srv
        .multipart_uploads()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, vec!["b/three".to_string()]);
}

/// Lazily unmounts a mountpoint when dropped, so a failing test leaves no mount behind.
struct MountGuard(std::path::PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let path = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid C string; MNT_DETACH never blocks.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let wanted = path.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(wanted.as_ref()))
}

/// The pid of the bucketfs process serving `mountpoint` (from /proc/*/cmdline), if running.
fn daemon_serving(mountpoint: &Path) -> Option<i32> {
    let wanted = mountpoint.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
        {
            continue; // exited; waiting to be reaped
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("bucketfs"))
            && args.iter().any(|a| a == "--foreground")
            && args.iter().any(|a| a.contains(&wanted))
        {
            return Some(pid);
        }
    }
    None
}

#[test]
fn daemon_reports_ready_serves_and_unmounts_on_sigterm() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting needs root here");
        return;
    }
    let srv = TestServer::start_blocking();
    srv.put_object("hello.txt", "hi there");
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = home.path().join("bucketfs.log");
    let _guard = MountGuard(mnt.clone());
    let out = run(
        bucketfs(home.path())
            .arg(srv.bucket())
            .arg(&mnt)
            .arg("-o")
            .arg(format!(
                "endpoint={},_netdev,log_file={}",
                srv.endpoint(),
                log.display()
            ))
            .env("AWS_ACCESS_KEY_ID", srv.access_key())
            .env("AWS_SECRET_ACCESS_KEY", srv.secret_key()),
        Duration::from_secs(30),
    );
    let err = stderr_of(&out);
    if fuse_unavailable(err.trim()) {
        return;
    }
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "stderr: {err}\nlog: {}", log_text());
    assert!(err.is_empty(), "{err}");

    // Ready means mounted: no waiting.
    assert!(is_mounted(&mnt), "not mounted once the starter returned");
    assert_eq!(
        std::fs::read_to_string(mnt.join("hello.txt")).unwrap(),
        "hi there"
    );
    std::fs::write(mnt.join("new.txt"), "written through the daemon").unwrap();

    let pid = daemon_serving(&mnt).expect("the daemon process");
    // SAFETY: sending a signal to a pid we just found.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let started = Instant::now();
    while (is_mounted(&mnt) || daemon_serving(&mnt).is_some())
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_mounted(&mnt), "still mounted; log: {}", log_text());
    assert!(daemon_serving(&mnt).is_none(), "daemon still running");
    assert_eq!(
        srv.get_object("new.txt").as_deref(),
        Some(&b"written through the daemon"[..])
    );
    let text = log_text();
    assert!(
        text.contains(&format!("mounted {}/ at {}", srv.bucket(), mnt.display())),
        "{text}"
    );
    assert!(
        text.contains("unmounting: finishing pending uploads"),
        "{text}"
    );
}
