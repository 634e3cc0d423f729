//! bucketfs as a system tool: mount(8) and fstab, `-o` options, stats, SIGTERM with uploads
//! pending, and the log line of a failed operation. Real mounts: skipped (with a printed
//! SKIPPED) without /dev/fuse and root.
//!
//! The mount(8) tests install `/sbin/mount.fuse.bucketfs` as a symlink to the test binary
//! (unless one is there already) and remove it afterwards; they run one at a time.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bucketfs_test_server::{Fault, FaultKind};
use common::process::run;
use common::{fuse_available, is_mounted, pattern, server, sha256, Mount, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_bucketfs");
const HELPER: &str = "/sbin/mount.fuse.bucketfs";

/// Serialises the tests that use the mount(8) helper symlink.
static HELPER_LOCK: Mutex<()> = Mutex::new(());

/// `/sbin/mount.fuse.bucketfs` → the test binary while alive (removed only if we made it).
struct HelperLink {
    installed: bool,
    _lock: MutexGuard<'static, ()>,
}

impl HelperLink {
    fn install() -> HelperLink {
        let lock = HELPER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let installed = match std::fs::symlink_metadata(HELPER) {
            Ok(_) => {
                eprintln!("note: {HELPER} exists already; using it as it is");
                false
            }
            Err(_) => {
                std::os::unix::fs::symlink(BIN, HELPER).expect("install the mount(8) helper");
                true
            }
        };
        HelperLink {
            installed,
            _lock: lock,
        }
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        if self.installed {
            let _ = std::fs::remove_file(HELPER);
        }
    }
}

/// A mount made through mount(8): unmounted (lazily) on drop if a test left it, and its daemon
/// waited for.
struct Mount8 {
    home: tempfile::TempDir,
    mnt: PathBuf,
    log: PathBuf,
}

impl Mount8 {
    fn new() -> Mount8 {
        let home = tempfile::tempdir().expect("tempdir");
        let mnt = home.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mountpoint");
        let log = home.path().join("bucketfs.log");
        Mount8 { home, mnt, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `-o` options every mount(8) test passes: the server, the region, the log file.
    fn base_options(&self, srv: &TestServer) -> String {
        format!(
            "endpoint={},region=us-east-1,path_style,log_file={}",
            srv.endpoint(),
            self.log.display()
        )
    }

    /// umount(8), then wait for the daemon to exit.
    fn umount(&self) {
        let out = run(
            Command::new("umount").arg(&self.mnt),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "umount: {}\nlog: {}",
            stderr(&out),
            self.log_text()
        );
        wait_until(Duration::from_secs(30), || {
            daemon_serving(&self.mnt).is_none()
        });
        assert!(
            daemon_serving(&self.mnt).is_none(),
            "daemon still running after umount; log: {}",
            self.log_text()
        );
    }
}

impl Drop for Mount8 {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        wait_until(Duration::from_secs(30), || {
            daemon_serving(&self.mnt).is_none()
        });
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `mount …` with no AWS settings in its environment (credentials must come from `-o`), or
/// with the test server's keys in it when `env_keys`.
fn mount8(srv: &TestServer, env_keys: bool) -> Command {
    let mut cmd = Command::new("mount");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    if env_keys {
        cmd.env("AWS_ACCESS_KEY_ID", srv.access_key())
            .env("AWS_SECRET_ACCESS_KEY", srv.secret_key());
    }
    cmd
}

/// The pid of the bucketfs daemon serving `mountpoint` (from /proc/*/cmdline), if running.
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
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "--foreground") && args.iter().any(|a| a == &wanted) {
            return Some(pid);
        }
    }
    None
}

/// `bucketfs stats [--raw] MNT`.
fn stats(mnt: &Path, raw: bool) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("stats");
    if raw {
        cmd.arg("--raw");
    }
    let out = run(cmd.arg(mnt), Duration::from_secs(20));
    assert!(out.status.success(), "bucketfs stats: {}", stderr(&out));
    stdout(&out)
}

/// The value of `name` (e.g. `s3_requests{op="put"}`) in the raw stats.
fn stat(raw: &str, name: &str) -> u64 {
    raw.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from the stats:\n{raw}"))
}

fn passwd_file(dir: &Path, srv: &TestServer) -> PathBuf {
    let path = dir.join("passwd-bucketfs");
    let mut f = std::fs::File::create(&path).expect("passwd file");
    writeln!(f, "{}:{}", srv.access_key(), srv.secret_key()).expect("write passwd file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

#[test]
fn fstab_line_and_mount_t_mount_serve_and_umount() {
    if !fuse_available() {
        return;
    }
    let _helper = HelperLink::install();
    let srv = server();
    srv.put_object("photos/2024/beach.jpg", "jpeg bytes");
    srv.put_object("outside.txt", "not under the prefix");
    let m = Mount8::new();
    let passwd = passwd_file(m.home.path(), &srv);

    // 1. The fstab line, through mount -T FILE MOUNTPOINT (as `mount /mnt/b` does with /etc/fstab).
    let fstab = m.home.path().join("fstab");
    let options = format!(
        "_netdev,noauto,nofail,user,x-systemd.automount,{},passwd_file={},allow_other,\
         uid=1000,gid=1000,prefix=photos/,probe=off",
        m.base_options(&srv),
        passwd.display()
    );
    std::fs::write(
        &fstab,
        format!(
            "# test fstab\n{} {} fuse.bucketfs {options} 0 0\n",
            srv.bucket(),
            m.mnt.display()
        ),
    )
    .unwrap();
    let out = run(
        mount8(&srv, false).arg("-T").arg(&fstab).arg(&m.mnt),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "mount -T fstab: {}\nlog: {}",
        stderr(&out),
        m.log_text()
    );
    // The command returned only once the mount was live.
    assert!(is_mounted(&m.mnt), "not mounted when mount(8) returned");
    let meta = std::fs::metadata(m.mnt.join("2024/beach.jpg")).expect("stat through the mount");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    assert_eq!(
        std::fs::read_to_string(m.mnt.join("2024/beach.jpg")).unwrap(),
        "jpeg bytes"
    );
    assert!(!m.mnt.join("outside.txt").exists());
    std::fs::write(m.mnt.join("new.txt"), "via fstab").unwrap();
    assert_eq!(
        srv.get_object("photos/new.txt").as_deref(),
        Some(&b"via fstab"[..])
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mountinfo.contains(&format!(" bucketfs:{}/photos/ ", srv.bucket())),
        "source in mountinfo:\n{mountinfo}"
    );

    // Statistics while mounted, for people and for scripts.
    let nice = stats(&m.mnt, false);
    assert!(nice.contains("S3 requests"), "{nice}");
    assert!(nice.contains("PutObject"), "{nice}");
    assert!(nice.contains("Cache"), "{nice}");
    let raw = stats(&m.mnt, true);
    assert_eq!(stat(&raw, "s3_requests{op=\"put\"}"), 1, "{raw}");

    m.umount();
    assert!(!is_mounted(&m.mnt));
    let log = m.log_text();
    assert!(log.contains("stats at unmount"), "{log}");
    assert!(
        !log.contains(&srv.secret_key()),
        "a secret in the log: {log}"
    );

    // 2. The same as a command: mount -t fuse.bucketfs BUCKET DIR -o …, keys from the environment.
    let out = run(
        mount8(&srv, true)
            .args(["-t", "fuse.bucketfs", srv.bucket()])
            .arg(&m.mnt)
            .arg("-o")
            .arg(format!(
                "{},allow_other,_netdev,prefix=photos/",
                m.base_options(&srv)
            )),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "mount -t: {}\nlog: {}",
        stderr(&out),
        m.log_text()
    );
    assert!(is_mounted(&m.mnt));
    assert_eq!(
        std::fs::read_to_string(m.mnt.join("new.txt")).unwrap(),
        "via fstab"
    );
    m.umount();
}

#[test]
fn ro_option_refuses_writes_with_erofs() {
    if !fuse_available() {
        return;
    }
    let _helper = HelperLink::install();
    let srv = server();
    srv.put_object("keep.txt", "unchanged");
    let m = Mount8::new();
    let out = run(
        mount8(&srv, true)
            .args(["-t", "fuse.bucketfs", srv.bucket()])
            .arg(&m.mnt)
            .arg("-o")
            .arg(format!("ro,{}", m.base_options(&srv))),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "mount: {}\nlog: {}",
        stderr(&out),
        m.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(m.mnt.join("keep.txt")).unwrap(),
        "unchanged"
    );
    let erofs = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs(std::fs::write(m.mnt.join("new.txt"), "x"), "create");
    erofs(
        std::fs::OpenOptions::new()
            .write(true)
            .open(m.mnt.join("keep.txt"))
            .map(drop),
        "open for writing",
    );
    erofs(std::fs::create_dir(m.mnt.join("d")), "mkdir");
    erofs(std::fs::remove_file(m.mnt.join("keep.txt")), "unlink");
    assert_eq!(srv.count("PutObject"), 0);
    assert_eq!(srv.count("DeleteObject"), 0);
    m.umount();
}

#[test]
fn bad_dash_o_options_fail_with_a_clear_message() {
    if !fuse_available() {
        return;
    }
    let _helper = HelperLink::install();
    let srv = server();
    let m = Mount8::new();
    let try_mount = |opts: String| {
        let out = run(
            mount8(&srv, true)
                .args(["-t", "fuse.bucketfs", srv.bucket()])
                .arg(&m.mnt)
                .arg("-o")
                .arg(opts),
            Duration::from_secs(60),
        );
        assert!(!out.status.success(), "mount succeeded");
        assert!(!is_mounted(&m.mnt));
        stderr(&out)
    };
    let base = m.base_options(&srv);

    let err = try_mount(format!("{base},frobnicate=3"));
    assert!(err.contains("unknown mount option 'frobnicate'"), "{err}");
    for valid in [
        "valid options are",
        "endpoint=",
        "passwd_file=",
        "ro",
        "_netdev",
    ] {
        assert!(err.contains(valid), "{valid} not in: {err}");
    }
    let err = try_mount(format!("{base},part_size"));
    assert!(
        err.contains("mount option 'part_size' needs a value"),
        "{err}"
    );
    let err = try_mount(format!("{base},allow_other=yes"));
    assert!(err.contains("'allow_other' takes no value"), "{err}");
    let err = try_mount(format!("{base},part_size=1MiB"));
    assert!(err.contains("below the S3 minimum"), "{err}");

    // A failure of the daemon itself reaches mount(8)'s exit status too.
    let err = try_mount(format!(
        "endpoint=http://127.0.0.1:1,retry_timeout=2,log_file={}",
        m.log.display()
    ));
    assert!(err.contains("cannot reach http://127.0.0.1:1"), "{err}");
}

#[test]
fn stats_count_one_put_per_small_file() {
    if !fuse_available() {
        return;
    }
    const FILES: u64 = 20;
    let srv = server();
    srv.put_object("dir/existing.txt", "x");
    let m = Mount::new(&srv, &[]);
    let dir = m.p("dir");
    // The documented pattern: list the directory once, then create files in it.
    let listed = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(listed, 1);
    for i in 0..FILES {
        std::fs::write(dir.join(format!("f{i:02}.txt")), format!("file {i}")).unwrap();
    }
    let raw = stats(m.path(), true);
    let put = stat(&raw, "s3_requests{op=\"put\"}");
    assert_eq!(put, FILES, "{raw}");
    assert_eq!(srv.count("PutObject"), FILES);
    // docs/SEMANTICS.md, "Request counts": no other request per new file in a listed
    // directory. Besides the PUTs there are only: at mount, 1 LIST (the bucket check) and
    // 1 ListMultipartUploads (upload recovery); the lookup of `dir` (HEAD + LIST at once);
    // its listing (1 LIST).
    let others: u64 = raw
        .lines()
        .filter(|l| l.starts_with("s3_requests{") && !l.starts_with("s3_requests{op=\"put\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(others <= 5, "{others} requests besides the PUTs:\n{raw}");
    assert_eq!(
        stat(&raw, "s3_bytes_sent"),
        (0..FILES)
            .map(|i| format!("file {i}").len() as u64)
            .sum::<u64>()
    );
    assert_eq!(stat(&raw, "s3_retries"), 0);
    assert_eq!(stat(&raw, "pending_upload_files"), 0);
    for name in [
        "memory_in_use_bytes",
        "cache_lookup_hits",
        "cache_lookup_misses",
        "cache_readdir_hits",
        "cache_read_hit_bytes",
    ] {
        stat(&raw, name);
    }

    // Errors by code: a failed GET shows up (and the nice view shows it).
    // (A 403 is tried once more with reloaded keys: the fault stays until cleared.)
    srv.add_fault(Fault::new(FaultKind::access_denied()).op("GetObject"));
    assert!(std::fs::read(m.p("dir/existing.txt")).is_err());
    srv.clear_faults();
    let raw = stats(m.path(), true);
    assert!(stat(&raw, "s3_errors{code=\"AccessDenied\"}") >= 1, "{raw}");
    let nice = stats(m.path(), false);
    assert!(nice.contains("AccessDenied"), "{nice}");
}

#[test]
fn sigterm_finishes_the_pending_upload_and_logs_progress() {
    if !fuse_available() {
        return;
    }
    const SIZE: usize = 64 << 20;
    let srv = server();
    // Every part is slow: the upload is still going when SIGTERM comes.
    srv.add_fault(Fault::new(FaultKind::Delay(Duration::from_millis(2500))).op("UploadPart"));
    let mut m = Mount::new(&srv, &[]);
    let data = pattern(SIZE, 7);
    let want = sha256(&data);
    let path = m.p("big.bin");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            f.write_all(chunk)?;
            if i == 16 {
                let _ = tx.send(());
            }
        }
        f.sync_all()?;
        drop(f);
        Ok(())
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the writer got 16 MiB in");
    let mut child: Child = m.child.take().expect("the bucketfs process");
    // SAFETY: a signal to the process this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);

    writer
        .join()
        .expect("writer thread")
        .expect("the writer finishes its file after SIGTERM");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bucketfs did not exit after SIGTERM: {}", m.log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = m.log_text();
    assert!(status.success(), "exit {status}; log: {log}");
    assert!(!is_mounted(m.path()), "still mounted");
    let got = srv.get_object("big.bin").expect("the object was uploaded");
    assert_eq!(got.len(), SIZE);
    assert_eq!(sha256(&got), want);
    assert!(srv.multipart_uploads().is_empty());
    assert!(log.contains("SIGTERM: unmounting"), "{log}");
    assert!(log.contains("still to upload"), "no progress line: {log}");
    assert!(log.contains("stats at unmount"), "{log}");
}

#[test]
fn failed_operation_logs_the_s3_error_code() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    srv.add_fault(Fault::new(FaultKind::access_denied()).op("PutObject"));
    // close(2) is where the upload happens and fails (std::fs::write ignores close errors).
    let mut f = std::fs::File::create(m.p("denied.txt")).expect("create");
    f.write_all(b"nope").expect("write");
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: closing the descriptor we own, once.
    let rc = unsafe { libc::close(fd) };
    let err = std::io::Error::last_os_error();
    assert_eq!(rc, -1, "close succeeded although PutObject was refused");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    assert!(srv.get_object("denied.txt").is_none());

    let log = m.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("s3_code=AccessDenied"))
        .collect();
    // The close (flush) that failed: one line with everything needed to ask the provider.
    let flush: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("op=\"flush\""))
        .collect();
    assert_eq!(flush.len(), 1, "one line for the failed close: {log}");
    for line in &lines {
        for field in [
            "WARN",
            "op=",
            "path=\"/denied.txt\"",
            "errno=\"EACCES\"",
            "http_status=403",
            "request_id=\"TESTREQ",
        ] {
            assert!(line.contains(field), "{field} missing from: {line}");
        }
    }
    assert!(!log.contains(&srv.secret_key()), "a secret in the log");
}

/// GET `path` from the metrics endpoint at `addr`: the status line and the body.
fn scrape(addr: &str, path: &str) -> (String, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[test]
fn metrics_addr_serves_the_counters_and_a_taken_port_fails_the_mount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.put_object("a.txt", "hello");
    // a free port: bind, note, release
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .to_string();
    let m = Mount::new(&srv, &["--metrics-addr", &addr]);
    assert_eq!(std::fs::read(m.p("a.txt")).unwrap(), b"hello");
    let (status, body) = scrape(&addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let get = body
        .lines()
        .find_map(|l| l.strip_prefix("bucketfs_s3_requests_total{op=\"get\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(get.is_some_and(|n| n >= 1), "{body}");
    assert!(
        body.lines()
            .any(|l| l == "# TYPE bucketfs_s3_requests counter"),
        "{body}"
    );
    assert!(
        body.lines().any(|l| l == "# TYPE bucketfs_inodes gauge"),
        "{body}"
    );
    assert!(
        body.lines().all(|l| l.starts_with("bucketfs_")
            || l.starts_with("# HELP bucketfs_")
            || l.starts_with("# TYPE bucketfs_")
            || l == "# EOF"),
        "{body}"
    );
    let (status, _) = scrape(&addr, "/nothing");
    assert!(status.contains(" 404 "), "{status}");

    // The port is taken now: a second mount says so in one line and does not mount.
    let dir = tempfile::tempdir().unwrap();
    let endpoint = srv.endpoint();
    let out = run(
        common::bucketfs_cmd(&srv).args([
            "mount",
            srv.bucket(),
            dir.path().to_str().unwrap(),
            "--endpoint",
            &endpoint,
            "--region",
            "us-east-1",
            "--path-style",
            "--metrics-addr",
            &addr,
        ]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot serve metrics at"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!is_mounted(dir.path()));
}
