//! TLS: certificates are verified by default; `--ca-bundle FILE` and `AWS_CA_BUNDLE` add
//! trusted CAs; a certificate made for another host name is refused; and `AWS_CA_BUNDLE` set
//! (as on many machines) does not get in the way of a plain http:// endpoint.
//!
//! The https server is the test server with a private CA made at start
//! ([`TestServer::start_tls_blocking`]). Each case runs the bucketfs binary (`mount`, when
//! /dev/fuse and root are there, else a `SKIPPED` note; and `cleanup`, which connects the same
//! way without FUSE) and, where simpler, the S3 client directly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bucketfs::s3::{ListRequest, PutOptions, S3Client, S3Config, S3Error};
use bucketfs_test_server::{ServerConfig, TestServer, TlsConfig};
use common::is_mounted;
use common::process::{one_line_failure, run, stderr_of};

const BIN: &str = env!("CARGO_BIN_EXE_bucketfs");

/// A bucketfs command with no AWS settings but the test server's keys, HOME in `home`.
fn bucketfs(srv: &TestServer, home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", srv.access_key())
        .env("AWS_SECRET_ACCESS_KEY", srv.secret_key())
        .stdin(Stdio::null());
    cmd
}

/// /dev/fuse and root, or a `SKIPPED` note saying which part is not run.
fn can_mount(what: &str) -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    let ok = Path::new("/dev/fuse").exists() && unsafe { libc::geteuid() } == 0;
    if !ok {
        eprintln!("SKIPPED ({what}): mounting needs /dev/fuse and root");
    }
    ok
}

/// A scratch directory with the server's CA certificate in `ca.pem`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(srv: &TestServer) -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(pem) = srv.ca_pem() {
            std::fs::write(dir.path().join("ca.pem"), pem).expect("write ca.pem");
        }
        Scratch { dir }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn mountpoint(&self) -> PathBuf {
        let mnt = self.dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).expect("mkdir mnt");
        mnt
    }
}

/// `bucketfs cleanup s3://BUCKET` (lists uploads: one S3 request, no FUSE) on `endpoint`.
fn cleanup(srv: &TestServer, s: &Scratch, endpoint: &str, cfg: impl Fn(&mut Command)) -> Output {
    let mut cmd = bucketfs(srv, s.home());
    cmd.arg("cleanup")
        .arg(format!("s3://{}", srv.bucket()))
        .args(["--endpoint", endpoint, "--region", "us-east-1"])
        .args(["--path-style", "--retry-timeout", "20"]);
    cfg(&mut cmd);
    run(&mut cmd, Duration::from_secs(60))
}

/// `bucketfs mount` as a daemon (the default): returns once it is mounted or has failed.
fn mount_daemon(srv: &TestServer, s: &Scratch, cfg: impl Fn(&mut Command)) -> Output {
    let mut cmd = bucketfs(srv, s.home());
    cmd.arg("mount")
        .arg(srv.bucket())
        .arg(s.mountpoint())
        .args(["--endpoint", &srv.endpoint(), "--region", "us-east-1"])
        .args(["--path-style", "--retry-timeout", "20"]);
    cfg(&mut cmd);
    run(&mut cmd, Duration::from_secs(60))
}

/// A foreground mount; unmounted (lazily, if need be) on drop.
struct Mounted {
    mnt: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Mounted {
    fn start(srv: &TestServer, s: &Scratch, cfg: impl Fn(&mut Command)) -> Mounted {
        let mnt = s.mountpoint();
        let log = s.home().join("bucketfs.log");
        let logfile = std::fs::File::create(&log).expect("log file");
        let mut cmd = bucketfs(srv, s.home());
        cmd.arg("mount")
            .arg(srv.bucket())
            .arg(&mnt)
            .args(["--endpoint", &srv.endpoint(), "--region", "us-east-1"])
            .args(["--path-style", "--foreground"])
            .stdout(Stdio::null())
            .stderr(logfile);
        cfg(&mut cmd);
        let mut m = Mounted {
            mnt,
            child: Some(cmd.spawn().expect("spawn bucketfs")),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&m.mnt) {
            if let Some(Ok(Some(status))) = m.child.as_mut().map(|c| c.try_wait()) {
                m.child = None;
                panic!("bucketfs exited early ({status}): {}", m.log_text());
            }
            assert!(Instant::now() < deadline, "no mount: {}", m.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// umount, and the daemon's exit status.
    fn unmount(&mut self) -> bool {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
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
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.is_some() && !self.unmount() {
            eprintln!("bucketfs log:\n{}", self.log_text());
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// Mount with `cfg`, write a file through the mount, see it in the bucket, read it (and an
/// object put directly) back through the mount, unmount cleanly.
fn mount_write_read(srv: &TestServer, s: &Scratch, cfg: impl Fn(&mut Command)) {
    srv.put_object("seeded.txt", "put straight into the bucket");
    let mut m = Mounted::start(srv, s, cfg);
    let body = common::pattern(300_000, 7);
    std::fs::write(m.mnt.join("through-tls.bin"), &body).expect("write through the mount");
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.get_object("through-tls.bin").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        srv.get_object("through-tls.bin").as_deref(),
        Some(&body[..]),
        "the file is not in the bucket; log: {}",
        m.log_text()
    );
    assert_eq!(
        std::fs::read(m.mnt.join("through-tls.bin")).expect("read back"),
        body
    );
    assert_eq!(
        std::fs::read_to_string(m.mnt.join("seeded.txt")).expect("read seeded"),
        "put straight into the bucket"
    );
    assert!(m.unmount(), "unclean exit; log: {}", m.log_text());
    assert!(!is_mounted(&m.mnt));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The S3 client on `endpoint` with `ca_bundle`; `AWS_CA_BUNDLE` is whatever this process has.
fn client(
    srv: &TestServer,
    endpoint: &str,
    ca_bundle: Option<PathBuf>,
) -> Result<S3Client, S3Error> {
    let creds = Arc::new(bucketfs::s3::StaticCredentials {
        credentials: bucketfs::s3::Credentials {
            access_key_id: srv.access_key(),
            secret_access_key: srv.secret_key(),
            session_token: None,
        },
        origin: "test".into(),
    });
    let mut cfg = S3Config::new(endpoint, "us-east-1", srv.bucket(), creds);
    cfg.ca_bundle = ca_bundle;
    S3Client::new(cfg)
}

/// PUT, GET and LIST through `c`, checked against the server's store.
fn round_trip(srv: &TestServer, c: &S3Client, key: &str) {
    let rt = runtime();
    let body = bytes::Bytes::from(format!("{key} over TLS"));
    rt.block_on(c.put_object(key, body.clone(), &PutOptions::default()))
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    assert_eq!(srv.get_object(key), Some(body.clone()));
    let got = rt
        .block_on(c.get_object(key, None, None))
        .unwrap_or_else(|e| panic!("GET {key}: {e}"));
    assert_eq!(got.body, body);
    let page = rt
        .block_on(c.list_objects_v2(&ListRequest::default()))
        .expect("LIST");
    assert!(page.objects.iter().any(|o| o.key == key));
}

/// One LIST through a client that must refuse the server's certificate: the error, which is
/// not retried and sends nothing the server could count.
fn refused(srv: &TestServer, c: &S3Client) -> String {
    let started = Instant::now();
    let err = runtime()
        .block_on(c.list_objects_v2(&ListRequest::default()))
        .expect_err("the certificate must be refused");
    let S3Error::Certificate(why) = &err else {
        panic!("want a certificate error, got {err:?}");
    };
    assert_eq!(c.stats().retries, 0, "a refused certificate is not retried");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(srv.total_requests(), 0, "no request may get through");
    assert!(err.to_string().contains("TLS certificate"), "{err}");
    why.clone()
}

#[test]
fn private_ca_is_refused_without_ca_bundle() {
    let srv = TestServer::start_tls_blocking();
    assert!(srv.endpoint().starts_with("https://"));
    let s = Scratch::new(&srv);

    let c = client(&srv, &srv.endpoint(), None).expect("client");
    let why = refused(&srv, &c);
    assert!(why.contains("not signed by a trusted CA"), "{why}");

    let started = Instant::now();
    let line = one_line_failure(&cleanup(&srv, &s, &srv.endpoint(), |_| {}));
    for want in [
        "TLS certificate of https://127.0.0.1:",
        "not accepted",
        "not signed by a trusted CA",
        "--ca-bundle",
    ] {
        assert!(line.contains(want), "{want:?} missing from: {line}");
    }
    assert!(!line.contains(&srv.secret_key()));
    assert!(started.elapsed() < Duration::from_secs(15), "retried?");

    if can_mount("mount without --ca-bundle") {
        let out = mount_daemon(&srv, &s, |_| {});
        let mount_line = one_line_failure(&out);
        assert!(
            mount_line.contains("TLS certificate of https://127.0.0.1:")
                && mount_line.contains("--ca-bundle"),
            "{mount_line}"
        );
        let mnt = s.mountpoint();
        assert!(!is_mounted(&mnt), "mounted despite the refused certificate");
        assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0);
    }
    assert_eq!(srv.total_requests(), 0);
    assert!(srv.keys().is_empty());
}

#[test]
fn ca_bundle_option_trusts_the_private_ca() {
    let srv = TestServer::start_tls_blocking();
    let s = Scratch::new(&srv);

    let c = client(&srv, &srv.endpoint(), Some(s.ca())).expect("client");
    round_trip(&srv, &c, "by-ip.txt");
    // The certificate also names localhost: a DNS name is verified as well as an IP.
    let localhost = format!("https://localhost:{}", srv.port());
    let c = client(&srv, &localhost, Some(s.ca())).expect("client");
    round_trip(&srv, &c, "by-name.txt");

    let ca = s.ca();
    let out = cleanup(&srv, &s, &srv.endpoint(), |c| {
        c.arg("--ca-bundle").arg(&ca);
    });
    assert!(out.status.success(), "{}", stderr_of(&out));

    if can_mount("mount with --ca-bundle") {
        mount_write_read(&srv, &s, |c| {
            c.arg("--ca-bundle").arg(&ca);
        });
    }
}

#[test]
fn aws_ca_bundle_trusts_the_private_ca() {
    let srv = TestServer::start_tls_blocking();
    let s = Scratch::new(&srv);
    let ca = s.ca();

    let out = cleanup(&srv, &s, &srv.endpoint(), |c| {
        c.env("AWS_CA_BUNDLE", &ca);
    });
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(srv.count("ListMultipartUploads") >= 1);

    if can_mount("mount with AWS_CA_BUNDLE") {
        mount_write_read(&srv, &s, |c| {
            c.env("AWS_CA_BUNDLE", &ca);
        });
    }
}

/// The machine's CA bundle, as AWS_CA_BUNDLE is often set to (it is on the CI machine).
fn system_bundle() -> Option<PathBuf> {
    let from_env = std::env::var_os("AWS_CA_BUNDLE").map(PathBuf::from);
    from_env
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}

#[test]
fn aws_ca_bundle_does_not_disturb_plain_http() {
    let srv = TestServer::start_blocking();
    assert!(srv.endpoint().starts_with("http://"));
    let s = Scratch::new(&srv);
    let Some(bundle) = system_bundle() else {
        eprintln!("SKIPPED: no system CA bundle on this machine");
        return;
    };

    let out = cleanup(&srv, &s, &srv.endpoint(), |c| {
        c.env("AWS_CA_BUNDLE", &bundle);
    });
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Nor does a bundle that cannot be read: it only matters for https.
    let missing = s.home().join("no-such-bundle.pem");
    let out = cleanup(&srv, &s, &srv.endpoint(), |c| {
        c.env("AWS_CA_BUNDLE", &missing);
    });
    assert!(out.status.success(), "{}", stderr_of(&out));

    if can_mount("mount over http with AWS_CA_BUNDLE") {
        mount_write_read(&srv, &s, |c| {
            c.env("AWS_CA_BUNDLE", &bundle);
        });
    }
}

#[test]
fn certificate_for_another_host_is_refused() {
    let tls = TlsConfig::generate(&["example.test"]).expect("certificates");
    let srv = TestServer::start_with_blocking(ServerConfig {
        tls: Some(tls),
        ..ServerConfig::default()
    });
    let s = Scratch::new(&srv);

    // The right CA, the wrong name: by IP and by DNS name.
    let c = client(&srv, &srv.endpoint(), Some(s.ca())).expect("client");
    let why = refused(&srv, &c);
    assert!(
        why.contains("not valid for name \"127.0.0.1\"") && why.contains("example.test"),
        "{why}"
    );
    let localhost = format!("https://localhost:{}", srv.port());
    let c = client(&srv, &localhost, Some(s.ca())).expect("client");
    let why = refused(&srv, &c);
    assert!(why.contains("not valid for name \"localhost\""), "{why}");

    let ca = s.ca();
    let line = one_line_failure(&cleanup(&srv, &s, &srv.endpoint(), |c| {
        c.arg("--ca-bundle").arg(&ca);
    }));
    assert!(
        line.contains("TLS certificate of https://127.0.0.1:") && line.contains("example.test"),
        "{line}"
    );
    if can_mount("mount of a server with another host's certificate") {
        let line = one_line_failure(&mount_daemon(&srv, &s, |c| {
            c.arg("--ca-bundle").arg(&ca);
        }));
        assert!(line.contains("not valid for name"), "{line}");
        assert!(!is_mounted(&s.mountpoint()));
    }
    assert_eq!(srv.total_requests(), 0);
}
