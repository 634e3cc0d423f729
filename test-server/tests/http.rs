//! The HTTP layer: counting, logging, byte accounting, faults, stop and
//! restart. Uses unsigned requests (anonymous access switched on) over a
//! tiny raw HTTP/1.1 client, so every byte on the wire is visible; SigV4 is
//! exercised by scripts/smoke.py with boto3.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bucketfs_test_server::{Fault, FaultKind, RandomFaults, ServerConfig, TestServer};

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Content-Length promised more than arrived.
    truncated: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection. `Err` when the connection closed
/// before a status line arrived.
fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw); // a reset after partial data is a truncation
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("no response ({} bytes)", raw.len()));
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let mut r = Resp {
        status,
        headers,
        body,
        truncated: false,
    };
    if method != "HEAD" {
        if let Some(len) = r
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            r.truncated = r.body.len() < len;
        }
    }
    Ok(r)
}

fn anon_server() -> TestServer {
    TestServer::start_with_blocking(ServerConfig {
        allow_anonymous: true,
        ..ServerConfig::default()
    })
}

fn obj(srv: &TestServer, key: &str) -> String {
    format!("/{}/{key}", srv.bucket())
}

#[test]
fn anonymous_requests_are_rejected_by_default() {
    let srv = TestServer::start_blocking();
    assert!(srv.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(
        (srv.access_key(), srv.secret_key()),
        ("AKIATEST".into(), "testsecret".into())
    );
    let r = send(
        srv.addr(),
        "GET",
        &format!("/{}?list-type=2", srv.bucket()),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("AccessDenied"));
    srv.set_allow_anonymous(true);
    let r = send(
        srv.addr(),
        "GET",
        &format!("/{}?list-type=2", srv.bucket()),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    // A bogus signature is checked, not ignored.
    let auth = "AWS4-HMAC-SHA256 Credential=AKIATEST/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
    let r = send(
        srv.addr(),
        "GET",
        &format!("/{}?list-type=2", srv.bucket()),
        &[("Authorization", auth)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status / 100, 4, "{r:?}");
    assert!(srv
        .request_log()
        .iter()
        .all(|rec| rec.header("authorization").is_none()));
}

#[test]
fn counts_log_and_bytes() {
    let srv = anon_server();
    let key = "dir/a file+%.txt";
    let target = format!("/{}/dir/a%20file%2B%25.txt", srv.bucket());
    let body = vec![b'x'; 10_000];
    let r = send(
        srv.addr(),
        "PUT",
        &target,
        &[("x-amz-meta-color", "red"), ("Content-Type", "text/x")],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("etag").unwrap(),
        format!("\"{}\"", srv.object_meta(key).unwrap().etag)
    );
    let meta = srv.object_meta(key).unwrap();
    assert_eq!(meta.metadata.get("color").map(String::as_str), Some("red"));
    assert_eq!(meta.content_type.as_deref(), Some("text/x"));
    let r = send(srv.addr(), "GET", &target, &[("Range", "bytes=-100")], b"").unwrap();
    assert_eq!((r.status, r.body.len()), (206, 100));
    assert_eq!(r.header("content-range"), Some("bytes 9900-9999/10000"));
    let r = send(srv.addr(), "HEAD", &target, &[], b"").unwrap();
    assert_eq!(r.header("x-amz-meta-color"), Some("red"));

    assert_eq!(srv.count("PutObject"), 1);
    assert_eq!(srv.count("GetObject"), 1);
    assert_eq!(srv.count("HeadObject"), 1);
    assert_eq!(srv.total_requests(), 3);
    assert!(srv.bytes_received() >= 10_000 && srv.bytes_received() < 10_100);
    assert!(
        srv.bytes_sent() >= 100 && srv.bytes_sent() < 1000,
        "{}",
        srv.bytes_sent()
    );
    let log = srv.request_log();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].op, "PutObject");
    assert_eq!(log[0].method, "PUT");
    assert_eq!(log[0].path, target);
    assert_eq!(log[0].key.as_deref(), Some(key));
    assert_eq!(log[0].status, Some(200));
    assert_eq!(log[0].header("X-Amz-Meta-Color"), Some("red"));
    assert_eq!(log[1].header("range"), Some("bytes=-100"));
    assert!(srv.op_mismatches().is_empty(), "{:?}", srv.op_mismatches());

    srv.reset_stats();
    assert_eq!(
        (
            srv.total_requests(),
            srv.bytes_received(),
            srv.request_log().len()
        ),
        (0, 0, 0)
    );
    let r = send(
        srv.addr(),
        "GET",
        &format!("/{}?list-type=2&prefix=dir%2F&delimiter=%2F", srv.bucket()),
        &[],
        b"",
    )
    .unwrap();
    let xml = String::from_utf8(r.body).unwrap();
    assert!(xml.contains("<Key>dir/a file+%.txt</Key>"), "{xml}");
    assert!(xml.contains("<ETag>\""), "{xml}");
    let rec = &srv.requests_for("ListObjectsV2")[0];
    assert_eq!(rec.query_param("prefix").as_deref(), Some("dir/"));
    assert_eq!(rec.query_param("list-type").as_deref(), Some("2"));
}

#[test]
fn request_log_is_bounded() {
    let srv = TestServer::start_with_blocking(ServerConfig {
        allow_anonymous: true,
        request_log_capacity: 5,
        ..ServerConfig::default()
    });
    for i in 0..12 {
        send(srv.addr(), "HEAD", &obj(&srv, &format!("k{i}")), &[], b"").unwrap();
    }
    let log = srv.request_log();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].key.as_deref(), Some("k7"));
    assert_eq!(log[4].id, 12);
    assert_eq!(log[4].status, Some(404));
    assert_eq!(srv.count("HeadObject"), 12);
}

#[test]
fn status_faults_with_filters() {
    let srv = anon_server();
    srv.put_object("a/1", "one");
    srv.put_object("b/1", "one");
    srv.add_fault(
        Fault::new(FaultKind::slow_down())
            .op("GetObject")
            .key_prefix("a/")
            .skip(1)
            .times(2),
    );
    let get = |k: &str| send(srv.addr(), "GET", &obj(&srv, k), &[], b"").unwrap();
    assert_eq!(get("a/1").status, 200); // skipped
    let r = get("a/1");
    assert_eq!(r.status, 503);
    let xml = String::from_utf8_lossy(&r.body);
    assert!(
        xml.contains("<Code>SlowDown</Code>") && xml.contains("<Resource>"),
        "{xml}"
    );
    assert_eq!(r.header("content-type"), Some("application/xml"));
    assert_eq!(get("b/1").status, 200); // other prefix
    assert_eq!(get("a/1").status, 503);
    assert_eq!(get("a/1").status, 200); // used up
    assert!(srv.pending_faults().is_empty());
    assert_eq!(srv.faults_injected(), 2);
    let faulted: Vec<_> = srv
        .request_log()
        .into_iter()
        .filter(|r| r.fault.is_some())
        .collect();
    assert_eq!(faulted.len(), 2);
    assert_eq!(faulted[0].status, Some(503));

    // A faulted PUT reads the body but does not store anything.
    srv.add_fault(
        Fault::new(FaultKind::internal_error())
            .op("PutObject")
            .times(1),
    );
    let r = send(srv.addr(), "PUT", &obj(&srv, "c"), &[], &[1u8; 5000]).unwrap();
    assert_eq!(r.status, 500);
    assert!(srv.get_object("c").is_none());
    assert!(srv.bytes_received() >= 5000);
    srv.add_fault(Fault {
        op: Some("CompleteMultipartUpload".into()),
        ..Fault::new(FaultKind::ErrorIn200 {
            code: "InternalError".into(),
        })
    });
    let r = send(
        srv.addr(),
        "POST",
        &format!("{}?uploadId=x", obj(&srv, "c")),
        &[],
        b"<x/>",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("<Error><Code>InternalError</Code>"));
    srv.clear_faults();
    assert_eq!(get("a/1").status, 200);
}

#[test]
fn drop_truncate_and_delay() {
    let srv = anon_server();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    srv.put_object("big", data.clone());

    srv.add_fault(
        Fault::new(FaultKind::DropConnection)
            .op("GetObject")
            .times(1),
    );
    assert!(send(srv.addr(), "GET", &obj(&srv, "big"), &[], b"").is_err());
    let rec = srv.request_log().pop().unwrap();
    assert_eq!(
        (rec.status, rec.fault.as_deref()),
        (None, Some("drop connection"))
    );

    srv.add_fault(Fault::new(FaultKind::TruncateBody).op("GetObject").times(1));
    let r = send(srv.addr(), "GET", &obj(&srv, "big"), &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.truncated, "body of {} bytes", r.body.len());
    assert!(!r.body.is_empty() && r.body.len() < data.len());
    assert_eq!(r.body[..], data[..r.body.len()]);

    // A truncated response without a body: applied, answer lost.
    srv.add_fault(Fault::new(FaultKind::TruncateBody).op("PutObject").times(1));
    assert!(send(srv.addr(), "PUT", &obj(&srv, "applied"), &[], b"yes").is_err());
    assert_eq!(srv.get_object("applied").as_deref(), Some(&b"yes"[..]));

    srv.add_fault(
        Fault::new(FaultKind::Delay(Duration::from_millis(400)))
            .op("HeadObject")
            .times(1),
    );
    let t = Instant::now();
    assert_eq!(
        send(srv.addr(), "HEAD", &obj(&srv, "big"), &[], b"")
            .unwrap()
            .status,
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(400));
    let r = send(srv.addr(), "GET", &obj(&srv, "big"), &[], b"").unwrap();
    assert_eq!(r.body, data);
}

#[test]
fn random_faults_are_reproducible() {
    let run = || {
        let srv = anon_server();
        srv.put_object("k", "v");
        srv.set_random_faults_config(RandomFaults {
            kinds: vec![FaultKind::slow_down(), FaultKind::internal_error()],
            ..RandomFaults::new(0.4, 99)
        });
        (0..30)
            .map(|_| {
                send(srv.addr(), "GET", &obj(&srv, "k"), &[], b"")
                    .unwrap()
                    .status
            })
            .collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a, run());
    let failed = a.iter().filter(|s| **s != 200).count();
    assert!((4..=22).contains(&failed), "{a:?}");
}

#[test]
fn stop_and_restart_keep_the_store() {
    let srv = anon_server();
    srv.put_object("kept", "data");
    srv.stop_blocking();
    assert!(!srv.is_running());
    assert!(TcpStream::connect(srv.addr()).is_err());
    srv.restart_blocking();
    let r = send(srv.addr(), "GET", &obj(&srv, "kept"), &[], b"").unwrap();
    assert_eq!(r.body, b"data");
}

#[test]
fn stop_cuts_requests_in_flight() {
    let srv = anon_server();
    srv.put_object("slow", "x");
    srv.add_fault(Fault::new(FaultKind::Delay(Duration::from_secs(30))).op("GetObject"));
    let addr = srv.addr();
    let target = obj(&srv, "slow");
    let client = std::thread::spawn(move || send(addr, "GET", &target, &[], b""));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    srv.stop_blocking();
    assert!(client.join().unwrap().is_err());
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn works_from_async_tests() {
    let srv = TestServer::start().await;
    srv.set_allow_anonymous(true);
    srv.set_min_part_size(1);
    let addr = srv.addr();
    let target = format!("/{}/x?uploads", srv.bucket());
    let r = tokio::task::spawn_blocking(move || send(addr, "POST", &target, &[], b""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    let uploads = srv.multipart_uploads();
    assert_eq!(uploads.len(), 1);
    assert!(String::from_utf8_lossy(&r.body).contains(&uploads[0].1));
    srv.stop().await;
    srv.restart().await;
    assert!(srv.is_running());
    drop(srv); // dropping inside a runtime must not panic
}
